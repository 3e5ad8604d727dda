"""A one-screen summary of a space: members, MRR, cash, A/R and the trial balance.

The KPI engine (finance.kpi) owns the definitions of DESIGN §6; the figures here delegate to
it, so ``deskbooks status``, the demo summary and ``deskbooks kpi`` always agree.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from finance import kpi, ledger
from finance.kpi import CASH_ACCOUNTS, in_service_on
from finance.models import Invoice, Location, Member

__all__ = ["CASH_ACCOUNTS", "SpaceSummary", "active_members", "in_service_on", "month_bounds",
           "mrr_cents", "revenue_cents", "space_summary"]


def mrr_cents(session: Session, day: date, *, location_id: int | None = None) -> int:
    """MRR on ``day`` (finance.kpi: active recurring plan charges, yearly ÷ 12)."""
    return kpi.mrr_cents(session, day, location_id=location_id)


def active_members(session: Session, day: date, *, location_id: int | None = None) -> int:
    """Active members on ``day`` (finance.kpi: distinct members with a subscription)."""
    return kpi.active_member_count(session, day, location_id=location_id)


def month_bounds(period: str) -> tuple[date, date]:
    year, month = (int(p) for p in period.split("-"))
    return date(year, month, 1), date(year, month, monthrange(year, month)[1])


def revenue_cents(session: Session, start: date, end: date) -> int:
    """Recognized revenue over [start, end] (finance.kpi: revenue accounts net of 4900)."""
    return kpi.revenue_cents(session, start, end)


@dataclass(frozen=True)
class SpaceSummary:
    as_of: str
    locations: int
    members: int
    active_members: int
    mrr_cents: int
    last_month: str
    revenue_last_month_cents: int
    accounts_receivable_cents: int
    cash_cents: int
    open_invoices: int
    trial_balance_debits_cents: int
    trial_balance_credits_cents: int
    trial_balance_zero: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def space_summary(session: Session, as_of: date) -> SpaceSummary:
    """The summary as of the end of ``as_of``'s previous full month and on ``as_of`` itself."""
    last_day_prev = date(as_of.year, as_of.month, 1) - timedelta(days=1)
    period = f"{last_day_prev.year:04d}-{last_day_prev.month:02d}"
    start, end = month_bounds(period)
    tb = ledger.trial_balance(session, as_of=as_of)
    return SpaceSummary(
        as_of=as_of.isoformat(),
        locations=int(session.execute(select(func.count(Location.id))).scalar_one()),
        members=int(session.execute(select(func.count(Member.id))).scalar_one()),
        active_members=active_members(session, as_of),
        mrr_cents=mrr_cents(session, as_of),
        last_month=period,
        revenue_last_month_cents=revenue_cents(session, start, end),
        accounts_receivable_cents=ledger.balance(session, "1100", end=as_of),
        cash_cents=ledger.balance(session, list(CASH_ACCOUNTS), end=as_of),
        open_invoices=int(
            session.execute(
                select(func.count(Invoice.id)).where(Invoice.status == "open")
            ).scalar_one()
        ),
        trial_balance_debits_cents=tb.total_debits,
        trial_balance_credits_cents=tb.total_credits,
        trial_balance_zero=tb.is_balanced,
    )
