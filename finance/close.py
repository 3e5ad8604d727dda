"""Month-end close: a checklist over the books, then the period lock when nothing blocks.

Checks for a period ``YYYY-MM`` (each reports what blocks, with counts and examples):

1. **drafts issued** — no invoice of the period is still a draft or approved-not-issued;
2. **receipts categorized** — no expense dated in the period is a draft without a decision;
3. **deferred revenue recognized** — every month slice of deferred revenue up to the period's
   end has its recognition entry (``recognize:<line>:<YYYY-MM>``);
4. **bank reconciled** — every imported bank line dated in the period is matched;
5. **anomalies triaged** — no finding dated in the period is still open.

``close_period`` locks the period only when all pass; it can be asked to report only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from finance import ledger
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.billing import parse_period
from finance.models import (
    Anomaly,
    BankTransaction,
    Expense,
    Invoice,
    InvoiceStatus,
    JournalEntry,
    PeriodLock,
)
from finance.receivables import recognitions_due
from finance.services import Services
from finance.util import chunks


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    examples: tuple[str, ...] = ()


@dataclass
class CloseReport:
    period: str
    checks: list[Check] = field(default_factory=list)
    locked: bool = False
    already_locked: bool = False

    @property
    def ready(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"period": self.period, "ready": self.ready, "locked": self.locked,
                "already_locked": self.already_locked,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail,
                            "examples": list(c.examples)} for c in self.checks]}

    def summary_text(self) -> str:
        head = (f"{self.period} is locked" if self.locked or self.already_locked
                else f"{self.period} cannot close yet" if not self.ready
                else f"{self.period} is ready to close")
        lines = [head]
        for c in self.checks:
            lines.append(f"{'✓' if c.passed else '✗'} {c.name}: {c.detail}")
        return "\n".join(lines)


def _drafts(session: Session, period: str) -> Check:
    rows = session.execute(select(Invoice.id).where(
        Invoice.period == period,
        Invoice.status.in_([InvoiceStatus.DRAFT, InvoiceStatus.APPROVED]))).scalars().all()
    return Check("drafts issued", not rows,
                 "all of the period's invoices are issued" if not rows
                 else f"{len(rows)} invoices are still drafts (deskbooks billing issue)",
                 tuple(f"invoice #{i}" for i in rows[:5]))


def _receipts(session: Session, start: date, end: date) -> Check:
    rows = session.execute(select(Expense.id, Expense.vendor_name).where(
        Expense.status == "draft", Expense.expense_date >= start,
        Expense.expense_date <= end)).all()
    return Check("receipts categorized", not rows,
                 "no receipt is waiting for a decision" if not rows
                 else f"{len(rows)} receipts are waiting for Confirm or Discard",
                 tuple(f"expense #{i} {v}" for i, v in rows[:5]))


def _recognition(session: Session, period: str) -> Check:
    wanted = [key for key, *_ in recognitions_due(session, period)]
    done: set[str] = set()
    for chunk in chunks(wanted, 2000):
        done |= set(session.execute(select(JournalEntry.idempotency_key).where(
            JournalEntry.idempotency_key.in_(chunk))).scalars())
    missing = [k for k in wanted if k not in done]
    return Check("deferred revenue recognized", not missing,
                 "every started service month is recognized" if not missing
                 else f"{len(missing)} month slices are not recognized "
                      "(deskbooks jobs run revenue_recognition)",
                 tuple(missing[:5]))


def _bank(session: Session, start: date, end: date) -> Check:
    total = session.execute(select(func.count(BankTransaction.id)).where(
        BankTransaction.posted_on >= start, BankTransaction.posted_on <= end)).scalar_one()
    open_rows = session.execute(select(BankTransaction.id, BankTransaction.payee).where(
        BankTransaction.posted_on >= start, BankTransaction.posted_on <= end,
        BankTransaction.matched_type.is_(None))).all()
    if not total:
        return Check("bank reconciled", False,
                     "no bank statement is imported for the period (deskbooks import bank)")
    return Check("bank reconciled", not open_rows,
                 f"all {total} bank lines are matched" if not open_rows
                 else f"{len(open_rows)} of {total} bank lines are unmatched "
                      "(deskbooks reconcile)",
                 tuple(f"bank line #{i} {p or ''}".strip() for i, p in open_rows[:5]))


def _anomalies(session: Session, start: date, end: date) -> Check:
    rows = session.execute(select(Anomaly.id, Anomaly.kind).where(
        Anomaly.status == "open", Anomaly.occurred_on >= start,
        Anomaly.occurred_on <= end)).all()
    return Check("anomalies triaged", not rows,
                 "no open finding in the period" if not rows
                 else f"{len(rows)} findings are still open (dismiss or resolve them)",
                 tuple(f"anomaly #{i} {k}" for i, k in rows[:5]))


CHECK_NAMES = ("drafts", "receipts", "recognition", "bank", "anomalies")


def check_close(session: Session, period: str, *, skip: frozenset[str] = frozenset()
                ) -> CloseReport:
    """Run the checklist (read-only); ``skip`` names checks waived by the person closing."""
    unknown = set(skip) - set(CHECK_NAMES)
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(CHECK_NAMES)}")
    start, end = parse_period(period)
    report = CloseReport(period)
    report.already_locked = session.execute(select(PeriodLock.id).where(
        PeriodLock.period == period)).first() is not None
    runs = {"drafts": lambda: _drafts(session, period),
            "receipts": lambda: _receipts(session, start, end),
            "recognition": lambda: _recognition(session, period),
            "bank": lambda: _bank(session, start, end),
            "anomalies": lambda: _anomalies(session, start, end)}
    for name in CHECK_NAMES:
        if name in skip:
            report.checks.append(Check(name, True, "waived by the person closing"))
        else:
            report.checks.append(runs[name]())
    return report


def close_period(services: Services, actor: Actor, period: str, *, lock: bool = True,
                 skip: frozenset[str] = frozenset()) -> CloseReport:
    """Check, then lock the period when every check passes (and ``lock``); audited."""
    with services.session() as session:
        require_role(session, actor, FINANCE_WRITERS, "close a month")
        report = check_close(session, period, skip=skip)
        if skip:
            from finance import audit

            audit.record(session, actor=actor.label, action="period.close_waiver",
                         entity_type="period", entity_id=period,
                         details={"waived": sorted(skip)})
        if lock and report.ready and not report.already_locked:
            ledger.lock_period(session, period, actor=actor.label)
            report.locked = True
    return report
