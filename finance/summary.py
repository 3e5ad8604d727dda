"""A one-screen summary of a space: members, MRR, cash, A/R and the trial balance.

The KPI engine owns the full definitions (DESIGN §6); this module computes the handful the
demo and ``deskbooks status`` print, with the same definitions.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from finance import ledger
from finance.models import Account, Interval, Invoice, Location, Member, Plan, Subscription
from finance.money import round_half_up

CASH_ACCOUNTS = ("1000", "1010", "1050")


def in_service_on(day: date) -> Any:
    """The condition for a subscription in service on ``day`` (end date inclusive)."""
    return and_(
        Subscription.start_date <= day,
        or_(Subscription.end_date.is_(None), Subscription.end_date >= day),  # type: ignore[union-attr]
    )


def mrr_cents(session: Session, day: date, *, location_id: int | None = None) -> int:
    """Active recurring plan charges on ``day``, normalized to a month (yearly ÷ 12)."""
    stmt = (
        select(Subscription.unit_price_cents, Subscription.quantity, Plan.interval)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(in_service_on(day))
    )
    if location_id is not None:
        stmt = stmt.where(Subscription.location_id == location_id)
    total = Decimal(0)
    for price, qty, interval in session.execute(stmt):
        monthly = Decimal(price) * qty
        if interval == Interval.YEAR:
            monthly /= 12
        total += monthly
    return round_half_up(total)


def active_members(session: Session, day: date, *, location_id: int | None = None) -> int:
    stmt = select(func.count(func.distinct(Subscription.member_id))).where(in_service_on(day))
    if location_id is not None:
        stmt = stmt.where(Subscription.location_id == location_id)
    return int(session.execute(stmt).scalar_one())


def month_bounds(period: str) -> tuple[date, date]:
    year, month = (int(p) for p in period.split("-"))
    return date(year, month, 1), date(year, month, monthrange(year, month)[1])


def revenue_cents(session: Session, start: date, end: date) -> int:
    """Recognized revenue over [start, end]: credits to revenue accounts, net of contras."""
    codes = list(
        session.execute(select(Account.code).where(Account.type == "revenue")).scalars()
    )
    return -ledger.balance(session, codes, start=start, end=end) if codes else 0


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
