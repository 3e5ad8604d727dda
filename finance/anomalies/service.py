"""Scanning for anomalies, storing findings once, and their triage (open / dismissed / resolved).

A scan runs the detectors over a date range (and optionally one location) and upserts what
they find into ``anomaly`` by fingerprint: a new problem is inserted as open; a problem already
stored and still open is refreshed (reason, amount, records); a dismissed or resolved one is
left as it is, so a rescan never raises the same problem twice nor reopens a closed one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finance import audit
from finance.anomalies.detectors import DETECTORS, Finding, Scope
from finance.anomalies.rules import KINDS, SEVERITY_ORDER, AnomalyError, AnomalyRules, load_rules
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.models import Anomaly, AnomalyStatus, Location, Role
from finance.services import Services
from finance.util import chunks

SCANNERS = {Role.MANAGER, Role.GM, Role.CFO, Role.ADMIN}
"""Who may run a scan (it only adds findings)."""
TRIAGERS = FINANCE_WRITERS
"""Who may dismiss, resolve or reopen a finding: managers, the CFO, admins."""


@dataclass(frozen=True)
class ScanReport:
    """What one scan found. ``new`` findings were stored now; ``existing`` were already known
    (their stored status is in ``statuses``, their row ids in ``anomaly_ids``)."""

    start: date
    end: date
    location_id: int | None
    kinds: tuple[str, ...]
    findings: tuple[Finding, ...]
    new: int
    existing: int
    anomaly_ids: dict[str, int] = field(default_factory=dict)  # fingerprint -> anomaly id
    statuses: dict[str, str] = field(default_factory=dict)  # fingerprint -> stored status

    def by_kind(self) -> dict[str, int]:
        counts = dict.fromkeys(self.kinds, 0)
        for f in self.findings:
            counts[f.kind] = counts.get(f.kind, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(),
            "location_id": self.location_id, "kinds": list(self.kinds),
            "new": self.new, "existing": self.existing, "by_kind": self.by_kind(),
            "findings": [f.as_dict() | {"id": self.anomaly_ids.get(f.fingerprint),
                                        "status": self.statuses.get(f.fingerprint)}
                         for f in self.findings],
        }


@dataclass(frozen=True)
class AnomalyView:
    """A stored finding as plain data (safe to use after the session closed)."""

    id: int
    kind: str
    severity: str
    status: str
    reason: str
    records: dict[str, list[int]]
    location_id: int | None
    amount_cents: int | None
    occurred_on: date | None
    detected_at: datetime
    status_by: str | None
    status_at: datetime | None
    status_note: str | None
    fingerprint: str

    @classmethod
    def of(cls, row: Anomaly) -> AnomalyView:
        assert row.id is not None
        return cls(row.id, row.kind, row.severity, row.status, row.reason,
                   {k: list(v) for k, v in (row.records or {}).items()}, row.location_id,
                   row.amount_cents, row.occurred_on, row.detected_at, row.status_by,
                   row.status_at, row.status_note, row.fingerprint)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "severity": self.severity, "status": self.status,
            "reason": self.reason, "records": self.records, "location_id": self.location_id,
            "amount_cents": self.amount_cents,
            "occurred_on": self.occurred_on.isoformat() if self.occurred_on else None,
            "detected_at": self.detected_at.isoformat(), "status_by": self.status_by,
            "status_at": self.status_at.isoformat() if self.status_at else None,
            "status_note": self.status_note,
        }


def rules_for(services: Services) -> AnomalyRules:
    """The rules file, with the capitalization threshold from settings when set explicitly."""
    settings = services.settings
    override = (settings.capitalization_threshold_cents
                if "capitalization_threshold_cents" in settings.model_fields_set else None)
    return load_rules(settings.knowledge_path, capitalization_threshold_cents=override)


def resolve_location(session: Session, location: str | int | None) -> int | None:
    """A location id from an id or a code (``DT``); ``AnomalyError`` if there is none."""
    if location is None:
        return None
    if isinstance(location, bool):
        raise AnomalyError(f"not a location: {location!r}")
    if isinstance(location, int):
        found = session.get(Location, location)
    else:
        code = location.strip()
        found = session.execute(select(Location).where(Location.code == code)).scalar_one_or_none()
        if found is None:
            found = session.execute(
                select(Location).where(Location.name == code)).scalar_one_or_none()
    if found is None:
        raise AnomalyError(f"no location {location!r}")
    return found.id


def check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    chosen = tuple(dict.fromkeys(k.strip() for k in kinds if k and k.strip()))
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise AnomalyError(f"unknown anomaly kind {', '.join(unknown)}; use one of "
                           f"{', '.join(KINDS)}")
    return chosen or KINDS


def detect(session: Session, rules: AnomalyRules, scope: Scope,
           kinds: Sequence[str] = KINDS) -> list[Finding]:
    """Run the detectors (read-only) and return their findings, most severe first."""
    found: dict[str, Finding] = {}
    for kind in kinds:
        for f in DETECTORS[kind](session, rules, scope):
            found.setdefault(f.fingerprint, f)
    return sorted(found.values(), key=lambda f: (-SEVERITY_ORDER.index(f.severity),
                                                 f.occurred_on or date.min, f.kind,
                                                 f.fingerprint))


def scan(services: Services, actor: Actor, *, start: date, end: date,
         location: str | int | None = None, kinds: Iterable[str] | None = None) -> ScanReport:
    """Detect anomalies dated in [start, end] and store them once (see the module doc)."""
    if not isinstance(start, date) or not isinstance(end, date):
        raise AnomalyError("start and end must be dates")
    if start > end:
        raise AnomalyError(f"the start {start.isoformat()} is after the end {end.isoformat()}")
    chosen = check_kinds(kinds)
    rules = rules_for(services)
    with services.session() as session:
        require_role(session, actor, SCANNERS, "scan for anomalies")
        scope = Scope(start, end, resolve_location(session, location))
        findings = detect(session, rules, scope, chosen)
        ids, statuses, new = store(session, findings)
        audit.record(session, actor=actor.label, action="anomalies.scan", entity_type="anomaly",
                     details={"start": start.isoformat(), "end": end.isoformat(),
                              "location_id": scope.location_id, "kinds": list(chosen),
                              "found": len(findings), "new": new})
    return ScanReport(start, end, scope.location_id, chosen, tuple(findings), new,
                      len(findings) - new, ids, statuses)


def store(session: Session, findings: Sequence[Finding]) -> tuple[dict[str, int], dict[str, str],
                                                                   int]:
    """Upsert findings by fingerprint; returns (ids, statuses, number inserted)."""
    existing: dict[str, Anomaly] = {}
    prints = [f.fingerprint for f in findings]
    for chunk in chunks(prints, 1000):
        for row in session.execute(
                select(Anomaly).where(Anomaly.fingerprint.in_(chunk))).scalars():  # type: ignore[attr-defined]
            existing[row.fingerprint] = row
    fresh = []
    for f in findings:
        row = existing.get(f.fingerprint)
        if row is None:
            fresh.append(f)
        elif row.status == AnomalyStatus.OPEN:
            _refresh(row, f)
    inserted = 0
    if fresh:
        try:
            with session.begin_nested():
                rows = [_row(f) for f in fresh]
                session.add_all(rows)
                session.flush()
            inserted = len(rows)
            existing.update((r.fingerprint, r) for r in rows)
        except IntegrityError:  # a concurrent scan stored some of them first: one at a time
            for f in fresh:
                try:
                    with session.begin_nested():
                        row = _row(f)
                        session.add(row)
                        session.flush()
                    inserted += 1
                    existing[f.fingerprint] = row
                except IntegrityError:
                    found = session.execute(select(Anomaly).where(
                        Anomaly.fingerprint == f.fingerprint)).scalar_one()
                    existing[f.fingerprint] = found
    session.flush()
    ids = {p: r.id for p, r in existing.items() if r.id is not None}
    statuses = {p: r.status for p, r in existing.items()}
    return ids, statuses, inserted


def _row(f: Finding) -> Anomaly:
    return Anomaly(kind=f.kind, fingerprint=f.fingerprint, severity=f.severity.value,
                   location_id=f.location_id, reason=f.reason[:1000], records=f.records,
                   amount_cents=f.amount_cents, occurred_on=f.occurred_on,
                   status=AnomalyStatus.OPEN.value)


def _refresh(row: Anomaly, f: Finding) -> None:
    """An open finding seen again: keep its id, status and detection time; refresh the facts.

    Records are merged, so a scan of a shorter range never forgets records an earlier scan
    linked (e.g. the older bills of a vendor who is an employee)."""
    records = {k: sorted(set(v)) for k, v in (row.records or {}).items()}
    for key, ids in f.records.items():
        records[key] = sorted(set(records.get(key, [])) | set(ids))
    changes = {"severity": f.severity.value, "reason": f.reason[:1000], "records": records,
               "amount_cents": f.amount_cents, "occurred_on": f.occurred_on,
               "location_id": f.location_id}
    for name, value in changes.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def set_status(services: Services, actor: Actor, anomaly_id: int, status: str,
               note: str | None = None) -> AnomalyView:
    """Dismiss (a reason is required), resolve or reopen a finding; audited.

    Setting the status it already has changes nothing and writes no audit row.
    """
    try:
        wanted = AnomalyStatus(status)
    except ValueError:
        raise AnomalyError(f"unknown status {status!r}; use open, dismissed or resolved") from None
    note = (note or "").strip() or None
    if wanted == AnomalyStatus.DISMISSED and not note:
        raise AnomalyError("dismissing a finding needs a reason")
    with services.session() as session:
        require_role(session, actor, TRIAGERS, f"mark findings {wanted.value}")
        row = session.get(Anomaly, anomaly_id, with_for_update=True)
        if row is None:
            raise AnomalyError(f"no anomaly {anomaly_id}")
        if row.status == wanted.value:
            return AnomalyView.of(row)
        before = row.status
        row.status = wanted.value
        row.status_by = actor.label[:40]
        row.status_at = services.clock()
        row.status_note = note[:500] if note else None
        audit.record(session, actor=actor.label, action=f"anomaly.{wanted.value}",
                     entity_type="anomaly", entity_id=row.id,
                     details={"from": before, "to": wanted.value, "kind": row.kind,
                              "note": (note or "")[:200]})
        session.flush()
        return AnomalyView.of(row)


def list_anomalies(session: Session, status: str | None = None,
                   location: str | int | None = None,
                   kinds: Iterable[str] | None = None) -> list[AnomalyView]:
    """Stored findings, most severe and most recent first."""
    stmt = select(Anomaly)
    if status is not None:
        try:
            stmt = stmt.where(Anomaly.status == AnomalyStatus(status).value)
        except ValueError:
            raise AnomalyError(f"unknown status {status!r}; use open, dismissed or "
                               "resolved") from None
    location_id = resolve_location(session, location)
    if location_id is not None:
        stmt = stmt.where(Anomaly.location_id == location_id)
    if kinds is not None:
        stmt = stmt.where(Anomaly.kind.in_(check_kinds(kinds)))  # type: ignore[attr-defined]
    rows = [AnomalyView.of(r) for r in session.execute(stmt).scalars()]
    rank = {s.value: i for i, s in enumerate(SEVERITY_ORDER)}
    rows.sort(key=lambda r: (-rank.get(r.severity, 0), -(r.occurred_on or date.min).toordinal(),
                             -r.id))
    return rows
