"""Money arithmetic: integer cents, Decimal math, half-up rounding, exact allocations."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finance.money import (
    MoneyError,
    allocate,
    format_cents,
    parse_amount,
    percent_of,
    round_cents,
    round_half_up,
    to_decimal,
)

ROOT = Path(__file__).resolve().parent.parent


@given(
    total=st.integers(min_value=-10**12, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_allocation_parts_always_sum_to_the_total(total, weights):
    """Whatever the weights, the allocated parts add up to the total exactly."""
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Decimal(total) * weight / sum(weights)
        assert abs(Decimal(part) - exact) < 1
        if weight == 0:
            assert part == 0


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=50))
def test_equal_split_differs_by_at_most_one_cent(total, n):
    """An equal split hands out the leftover cents one each, earliest first."""
    parts = allocate(total, [1] * n)
    assert max(parts) - min(parts) <= 1
    assert parts == sorted(parts, reverse=True)


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4))
def test_round_cents_is_half_up_to_the_cent(amount):
    """round_cents matches Decimal's ROUND_HALF_UP to two places."""
    from decimal import ROUND_HALF_UP
    assert round_cents(amount) == int(amount.quantize(Decimal("0.01"), ROUND_HALF_UP) * 100)


def test_half_cents_round_away_from_zero():
    """0.5 cent rounds up in magnitude, on both signs (the one rounding policy)."""
    assert round_half_up(Decimal("2.5")) == 3
    assert round_half_up(Decimal("-2.5")) == -3
    assert round_half_up(Decimal("2.4999")) == 2
    assert percent_of(1_000, Decimal("8.875")) == 89  # 88.75 -> 89
    assert percent_of(60_968, Decimal("10")) == 6_097  # 6096.8 -> 6097


def test_parse_amount_accepts_money_text_and_refuses_fractions_of_a_cent():
    """User amounts parse to cents; junk, floats and sub-cent precision are refused."""
    assert parse_amount("600") == 60_000
    assert parse_amount("$1,250.50") == 125_050
    assert parse_amount("(12.34)") == -1_234
    assert parse_amount(Decimal("0.1")) == 10
    for bad in ("12.345", "abc", "NaN", "Infinity", 12.5, True, None):
        with pytest.raises(MoneyError):
            parse_amount(bad)


def test_to_decimal_never_accepts_float():
    """A float is refused even when it looks harmless."""
    with pytest.raises(MoneyError, match="float"):
        to_decimal(0.5)


def test_format_cents_for_humans():
    """Display format: dollars with thousands separators and a leading minus."""
    assert format_cents(123_456) == "$1,234.56"
    assert format_cents(-500) == "-$5.00"
    assert format_cents(7) == "$0.07"
    assert format_cents(100, "EUR") == "1.00 EUR"
    with pytest.raises(MoneyError):
        format_cents(1.0)  # type: ignore[arg-type]


def test_allocate_refuses_nonsense_weights():
    """No weights, negative weights or all-zero weights are errors, not silent zeros."""
    for weights in ([], [-1, 2], [0, 0]):
        with pytest.raises(MoneyError):
            allocate(100, weights)


def _float_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and type(node.value) is float:
            found.append(f"{path.name}:{node.lineno} float literal {node.value}")
        elif isinstance(node, ast.Name) and node.id == "float":
            found.append(f"{path.name}:{node.lineno} uses float")
    return found


def test_no_float_anywhere_in_the_core():
    """The core and the tools contain no float literal, float() call or float annotation."""
    offenders = []
    for package in ("finance", "tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            offenders += [
                f for f in _float_uses(path)
                if "# float-ok" not in path.read_text().splitlines()[int(f.split(":")[1].split()[0]) - 1]
            ]
    # money.py names float only to refuse it
    offenders = [o for o in offenders if not o.startswith("money.py")]
    assert offenders == []
