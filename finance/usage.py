"""Usage ingestion: print, coffee-bar, door-access and day-pass events from outside systems.

Idempotent per (source, external id): a repeated event is reported as a duplicate and changes
nothing. Events for unknown members or locations, unknown kinds, negative quantities or prices
and naive timestamps are rejected one by one with a reason; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from finance import audit
from finance.models import Location, Member, UsageEvent, UsageKind
from finance.util import chunks


class UsageIn(BaseModel):
    """One event as an integration sends it."""

    source: str = Field(min_length=1, max_length=40)
    external_id: str = Field(min_length=1, max_length=120)
    member: str = Field(min_length=1, description="member code")
    location: str = Field(min_length=1, description="location code")
    kind: str
    quantity: int
    unit_price_cents: int = 0
    occurred_at: datetime


@dataclass(frozen=True)
class Rejected:
    index: int
    external_id: str
    reason: str


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": [r.__dict__ for r in self.rejected]}


def ingest_usage(session: Session, events: list[UsageIn], *, actor: str) -> IngestReport:
    """Validate and store events; returns what was accepted, duplicated and rejected (why)."""
    report = IngestReport()
    members = dict(session.execute(select(Member.code, Member.id).where(
        Member.code.in_({e.member for e in events}))).all())  # type: ignore[attr-defined]
    locations = dict(session.execute(select(Location.code, Location.id)).all())
    kinds = {k.value for k in UsageKind}
    keys = [(e.source, e.external_id) for e in events]
    seen: set[tuple[str, str]] = set()
    for chunk in chunks(keys, 500):
        seen |= set(session.execute(
            select(UsageEvent.source, UsageEvent.external_id).where(
                tuple_(UsageEvent.source, UsageEvent.external_id).in_(list(chunk)))
        ).all())
    rows = []
    for i, ev in enumerate(events):
        reason = None
        if ev.member not in members:
            reason = f"unknown member {ev.member!r}"
        elif ev.location not in locations:
            reason = f"unknown location {ev.location!r}"
        elif ev.kind not in kinds:
            reason = f"unknown kind {ev.kind!r} (expected one of {', '.join(sorted(kinds))})"
        elif ev.quantity < 0:
            reason = f"quantity must not be negative (got {ev.quantity})"
        elif ev.unit_price_cents < 0:
            reason = f"unit price must not be negative (got {ev.unit_price_cents})"
        elif ev.occurred_at.tzinfo is None:
            reason = "occurred_at needs a time zone (e.g. 2026-03-04T10:15:00Z)"
        if reason:
            report.rejected.append(Rejected(i, ev.external_id, reason))
            continue
        key = (ev.source, ev.external_id)
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        rows.append({
            "source": ev.source, "external_id": ev.external_id,
            "member_id": members[ev.member], "location_id": locations[ev.location],
            "kind": ev.kind, "quantity": ev.quantity, "unit_price_cents": ev.unit_price_cents,
            "occurred_at": ev.occurred_at,
        })
    table = UsageEvent.__table__  # type: ignore[attr-defined]
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # a concurrent sender of the same event is absorbed by the unique key, not an error
    stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=["source", "external_id"])
    for chunk in chunks(rows, 5000):
        session.execute(stmt, list(chunk))
    report.accepted = len(rows)
    if rows or report.rejected:
        audit.record(session, actor=actor, action="usage.ingest", entity_type="usage_event",
                     details={"accepted": report.accepted, "duplicates": report.duplicates,
                              "rejected": len(report.rejected)})
    return report
