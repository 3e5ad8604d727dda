"""The append-only audit log: who did what, when, to which record."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from finance.models import AuditLog


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: object = None,
    details: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> AuditLog:
    """Add one audit row in the caller's transaction (it commits or rolls back with the work)."""
    row = AuditLog(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        details=details or {},
        correlation_id=correlation_id,
    )
    session.add(row)
    return row
