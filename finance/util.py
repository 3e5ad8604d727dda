"""Small helpers shared by the core."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunks(rows: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (bulk statements stay under driver limits)."""
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
