"""The KPI engine: every KPI of DESIGN §6, by location and desk type, for any date range.

Names are the ``kpi`` values of the KPI tool. Each KPI is one function below whose docstring
is its definition; :data:`DEFINITIONS` carries the same text to users. The subtle points,
decided once for every caller (CLI, tools, charts, ``deskbooks status``):

- **Ranges** are calendar dates ``[start, end]``, both inclusive, read in the space's time
  zone (the caller resolves "last month"); ledger figures use the journal entry date.
- **Recognized revenue** is the credit balance of the revenue accounts (type ``revenue`` in
  the chart: 4000–4700) net of the 4900 Discounts & Credits contra account, by entry date.
  Deferred revenue (2200) counts when it is recognized, deposits (2300) and sales tax (2100)
  never. Member revenue (ARPM) is the part posted with a member on the line.
- **Money** is integer cents in the location's currency. Without a location filter the
  locations must share one currency, else the KPI refuses (pass a location).
- **Units**: money in ``cents``; rates in ``ppm`` (parts per million, 875_000 = 87.5 %);
  DSO in ``days`` (a Decimal to 0.1 day); counts in ``members``. A ratio whose denominator is
  zero has ``value None`` and a ``note`` saying why (no float anywhere).
- **Desk type** filters apply where the KPI has one: occupancy (plan and resource desk type),
  MRR, active members, revenue (the desk type's membership revenue account from the chart's
  ``line_kind_accounts.membership``; prorations on 4050 and usage are not split by desk type)
  and ARPM (that revenue ÷ members on that desk type). Other KPIs refuse a desk type with a
  clear :class:`KpiError`.
- **Occupancy** counts units in seats: a subscription occupies ``quantity`` seats of its
  plan's desk type on each day it is in service; available seats are the summed capacity of
  the active desk and office resources of that desk type. Resources have no dates, so the
  available seats are the same every day and the average of the daily rates equals occupied
  seat-days ÷ available seat-days. Virtual offices occupy no seats (refused).
- **MRR** takes subscriptions in service on ``end``; yearly plans count 1/12 of their price;
  the total is rounded half up once (breakdown parts are rounded on their own).
- **Budget targets** come from :class:`finance.models.BudgetTarget` (metric ``mrr``, month of
  ``end``): the location's row, or for all locations the row without a location, else the sum
  of the per-location rows.
- **Credit sales** (DSO) are the debits to 1100 Accounts Receivable in the range: invoices
  issued, tax included, like the receivable they create. A/R at range end is the 1100 balance
  through ``end``.
- **Invoices issued** are invoices with an issue date in the range (voided ones too: they
  were issued); credit notes by their issue date.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select
from sqlmodel import Session

from finance.ledger import Chart
from finance.models import (
    Account,
    BudgetTarget,
    CreditNote,
    DeskType,
    Interval,
    Invoice,
    InvoiceStatus,
    JournalEntry,
    JournalLine,
    Location,
    Plan,
    Resource,
    ResourceKind,
    Subscription,
)
from finance.money import format_cents, round_half_up

PPM = 1_000_000
CASH_ACCOUNTS = ("1000", "1010", "1050")
RECEIVABLE_ACCOUNT = "1100"
CONTRA_REVENUE_ACCOUNT = "4900"
# used when no chart is at hand (a bare session); the chart's line_kind_accounts wins otherwise
DEFAULT_DESK_TYPE_ACCOUNTS = {
    DeskType.HOT_DESK.value: "4000",
    DeskType.DEDICATED_DESK.value: "4010",
    DeskType.PRIVATE_OFFICE.value: "4020",
    DeskType.VIRTUAL_OFFICE.value: "4200",
}
SEATED_DESK_TYPES = (
    DeskType.HOT_DESK.value, DeskType.DEDICATED_DESK.value, DeskType.PRIVATE_OFFICE.value,
)

DEFINITIONS: dict[str, str] = {
    "occupancy_rate": "occupied seats ÷ available seats (desk and office capacity), by desk "
                      "type and location, averaged over the days of the range",
    "mrr": "sum of active recurring plan charges at the end of the range, normalized to a "
           "month (yearly plans ÷ 12)",
    "mrr_vs_plan": "MRR at the end of the range minus the budget target (metric mrr) for "
                   "that month; attainment = MRR ÷ target",
    "arpm": "recognized member revenue in the range ÷ average active members in the range "
            "(member-days ÷ days)",
    "revenue": "recognized revenue in the range (credits to revenue accounts net of 4900 "
               "Discounts & Credits), by account",
    "expense_ratio": "operating expenses (all expense accounts) ÷ recognized revenue in the "
                     "range",
    "cash_burn": "net decrease of cash accounts 1000, 1010 and 1050 over the range "
                 "(negative = cash grew)",
    "dso": "accounts receivable (1100) at range end ÷ credit sales (debits to 1100: invoices "
           "issued, tax included) in the range × days in the range",
    "invoice_error_rate": "credit notes issued ÷ invoices issued in the range",
    "active_members": "distinct members with a subscription in service at the end of the "
                      "range",
}
KPI_NAMES: tuple[str, ...] = tuple(DEFINITIONS)
UNITS = {
    "occupancy_rate": "ppm", "mrr": "cents", "mrr_vs_plan": "cents", "arpm": "cents",
    "revenue": "cents", "expense_ratio": "ppm", "cash_burn": "cents", "dso": "days",
    "invoice_error_rate": "ppm", "active_members": "members",
}
# KPIs computed from amounts: a whole-space figure needs one currency
MONEY_KPIS = frozenset({"mrr", "mrr_vs_plan", "arpm", "revenue", "expense_ratio", "cash_burn",
                        "dso"})
DESK_TYPE_KPIS = frozenset({"occupancy_rate", "mrr", "arpm", "revenue", "active_members"})


class KpiError(ValueError):
    """A KPI question that cannot be answered as asked; the message says why."""


@dataclass(frozen=True)
class KpiResult:
    """One KPI over one range. ``value`` is int cents / ppm / members, Decimal days, or None
    when the KPI is undefined for the range (``note`` says why)."""

    name: str
    value: int | Decimal | None
    unit: str
    start: date
    end: date
    location: str | None
    desk_type: str | None
    currency: str
    definition: str
    breakdown: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        data["value"] = str(self.value) if isinstance(self.value, Decimal) else self.value
        data["display"] = self.display
        return data

    @property
    def display(self) -> str:
        return format_value(self.value, self.unit, self.currency)


def format_value(value: int | Decimal | None, unit: str, currency: str = "USD") -> str:
    """Human text for a KPI value: ``$1,234.00``, ``87.5%``, ``34.2 days``, ``412``."""
    if value is None:
        return "n/a"
    if unit == "cents":
        return format_cents(int(value), currency)
    if unit == "ppm":
        pct = (Decimal(value) / 10_000).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        return f"{pct}%"
    if unit == "days":
        return f"{value} days"
    return f"{value:,}"


def ratio_ppm(numerator: int, denominator: int) -> int | None:
    """numerator ÷ denominator in parts per million, half up; None when dividing by zero."""
    if denominator == 0:
        return None
    return round_half_up(Decimal(numerator) * PPM / Decimal(denominator))


# --------------------------------------------------------------------------- months


def month_start(month: str) -> date:
    try:
        year, mon = month.split("-")
        return date(int(year), int(mon), 1)
    except ValueError:
        raise KpiError(f"a month looks like YYYY-MM, got {month!r}") from None


def month_end(month: str) -> date:
    first = month_start(month)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def add_months(month: str, n: int) -> str:
    first = month_start(month)
    index = first.year * 12 + first.month - 1 + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` through ``last`` (YYYY-MM), in order."""
    if month_start(first) > month_start(last):
        raise KpiError(f"the first month {first} is after the last month {last}")
    out = [month_of(month_start(first))]
    while out[-1] != month_of(month_start(last)):
        out.append(add_months(out[-1], 1))
    return out


def last_months(last: str, count: int) -> list[str]:
    """``count`` months ending with ``last``."""
    if count < 1:
        raise KpiError("a series needs at least one month")
    return month_range(add_months(last, -(count - 1)), last)


# --------------------------------------------------------------------------- SQL helpers


def in_service_on(day: date) -> Any:
    """The condition for a subscription in service on ``day`` (end date inclusive)."""
    return and_(
        Subscription.start_date <= day,
        or_(Subscription.end_date.is_(None), Subscription.end_date >= day),  # type: ignore[union-attr]
    )


def _overlaps(start: date, end: date) -> Any:
    return and_(
        Subscription.start_date <= end,
        or_(Subscription.end_date.is_(None), Subscription.end_date >= start),  # type: ignore[union-attr]
    )


def _days_in_service(session: Session, start: date, end: date) -> Any:
    """SQL for a subscription's days in service within [start, end] (overlapping rows only)."""
    dialect = session.get_bind().dialect.name
    last = func.coalesce(Subscription.end_date, literal(end))
    if dialect == "sqlite":
        clipped_end = func.min(last, literal(end))
        clipped_start = func.max(Subscription.start_date, literal(start))
        return cast(func.julianday(clipped_end) - func.julianday(clipped_start), Integer) + 1
    clipped_end = func.least(last, literal(end))
    clipped_start = func.greatest(Subscription.start_date, literal(start))
    return clipped_end - clipped_start + 1


@dataclass(frozen=True)
class _Scope:
    """The resolved filters of one question."""

    start: date
    end: date
    location_id: int | None
    location_code: str | None
    desk_type: str | None
    currency: str
    codes: dict[int, str]  # location id -> code

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _scope(session: Session, name: str, start: date, end: date, location: str | int | None,
           desk_type: str | None) -> _Scope:
    if name not in DEFINITIONS:
        raise KpiError(f"unknown KPI {name!r}; choose one of {', '.join(KPI_NAMES)}")
    if not isinstance(start, date) or not isinstance(end, date):
        raise KpiError("start and end must be dates")
    if start > end:
        raise KpiError(f"the range starts ({start}) after it ends ({end})")
    if desk_type is not None:
        valid = [d.value for d in DeskType]
        if desk_type not in valid:
            raise KpiError(f"unknown desk type {desk_type!r}; choose one of {', '.join(valid)}")
        if name not in DESK_TYPE_KPIS:
            raise KpiError(f"{name} has no desk-type breakdown (it is a whole-space or "
                           f"per-location figure); drop the desk type")
        if name == "occupancy_rate" and desk_type not in SEATED_DESK_TYPES:
            raise KpiError(f"{desk_type} occupies no seats, so it has no occupancy rate")
    rows = session.execute(select(Location.id, Location.code, Location.name,
                                  Location.currency)).all()
    codes = {r.id: r.code for r in rows}
    if location is None:
        currencies = sorted({r.currency for r in rows})
        if len(currencies) > 1 and name in MONEY_KPIS:
            raise KpiError(f"the locations use different currencies ({', '.join(currencies)}); "
                           "ask for one location")
        return _Scope(start, end, None, None, desk_type, currencies[0] if currencies else "USD",
                      codes)
    for r in rows:
        if location in (r.id, r.code) or (isinstance(location, str)
                                          and location.strip().lower() in (r.code.lower(),
                                                                           r.name.lower())):
            return _Scope(start, end, r.id, r.code, desk_type, r.currency, codes)
    known = ", ".join(sorted(codes.values())) or "none"
    raise KpiError(f"unknown location {location!r} (known: {known})")


def location_id_of(session: Session, location: str | int | None) -> int | None:
    """The id of a location given by code, name or id (None for all); KpiError if unknown."""
    if location is None:
        return None
    return _scope(session, "active_members", date.min, date.min, location, None).location_id


def _account_ids(session: Session, *, codes: Sequence[str] | None = None,
                 kind: str | None = None) -> dict[int, str]:
    stmt = select(Account.id, Account.code)
    if codes is not None:
        stmt = stmt.where(Account.code.in_(list(codes)))  # type: ignore[attr-defined]
    if kind is not None:
        stmt = stmt.where(Account.type == kind)
    return {r.id: r.code for r in session.execute(stmt)}


def _ledger_sums(session: Session, accounts: Mapping[int, str], sc: _Scope, *,
                 start: date | None, end: date | None, member_only: bool = False,
                 debits_only: bool = False, invert: bool = False) -> dict[tuple[str, int], int]:
    """Signed sums (debit positive) per (account code, location id) over entry dates in
    [start, end] (either bound may be open; ``invert`` sums the entries outside instead).

    Whole calendar months come from ``ledger_month_total`` (kept by every posting); only the
    partial months at the edges of the range read journal lines.
    """
    if not accounts:
        return {}
    if invert:  # outside [start, end] = everything minus the range
        out = _ledger_sums(session, accounts, sc, start=None, end=None,
                           member_only=member_only, debits_only=debits_only)
        inside = _ledger_sums(session, accounts, sc, start=start, end=end,
                              member_only=member_only, debits_only=debits_only)
        for key, cents in inside.items():
            out[key] = out.get(key, 0) - cents
        return out
    full_first = None if start is None else (
        month_of(start) if start.day == 1 else add_months(month_of(start), 1))
    full_last = None if end is None else (
        month_of(end) if end == month_end(month_of(end)) else add_months(month_of(end), -1))
    if full_first is not None and full_last is not None and full_first > full_last:
        return _line_sums(session, accounts, sc, start=start, end=end,
                          member_only=member_only, debits_only=debits_only)
    out = _month_sums(session, accounts, sc, full_first, full_last, member_only=member_only,
                      debits_only=debits_only)
    edges = []
    if start is not None and start.day != 1:
        edges.append((start, month_end(month_of(start))))
    if end is not None and full_last != month_of(end):
        edges.append((month_start(month_of(end)), end))
    for lo, hi in edges:
        for key, cents in _line_sums(session, accounts, sc, start=lo, end=hi,
                                     member_only=member_only, debits_only=debits_only).items():
            out[key] = out.get(key, 0) + cents
    return out


def _month_sums(session: Session, accounts: Mapping[int, str], sc: _Scope,
                first: str | None, last: str | None, *, member_only: bool,
                debits_only: bool) -> dict[tuple[str, int], int]:
    """Sums of whole months [first, last] (YYYY-MM, either open) from the monthly totals."""
    from finance.models import LedgerMonthTotal as T

    column = {(False, False): T.net_cents, (False, True): T.debit_cents,
              (True, False): T.member_net_cents, (True, True): T.member_debit_cents}[
        (member_only, debits_only)]
    stmt = (select(T.account_id, T.location_id, func.sum(column))
            .where(T.account_id.in_(list(accounts)))
            .group_by(T.account_id, T.location_id))
    if first is not None:
        stmt = stmt.where(T.month >= first)
    if last is not None:
        stmt = stmt.where(T.month <= last)
    if sc.location_id is not None:
        stmt = stmt.where(T.location_id == sc.location_id)
    return {(accounts[acct], loc): int(total or 0)
            for acct, loc, total in session.execute(stmt)}


def _line_sums(session: Session, accounts: Mapping[int, str], sc: _Scope, *,
               start: date | None, end: date | None, member_only: bool = False,
               debits_only: bool = False, invert: bool = False) -> dict[tuple[str, int], int]:
    """Like :func:`_ledger_sums`, from the journal lines themselves.

    Date-bounded sums are driven from the entry dates (journal_entry's date index, then the
    covering index of journal_line by entry): on SQLite the account filter is written so
    that it cannot pick the account index instead, which would read every line of those
    accounts since the books began.
    """
    if not accounts:
        return {}
    ids = list(accounts)
    if start is None and end is None:
        account_filter = JournalLine.account_id.in_(ids)  # type: ignore[attr-defined]
    elif session.get_bind().dialect.name == "sqlite":
        account_filter = (JournalLine.account_id + 0).in_(ids)
    else:
        account_filter = JournalLine.account_id.in_(ids)  # type: ignore[attr-defined]
    stmt = (
        select(JournalLine.account_id, JournalLine.location_id,
               func.sum(JournalLine.amount_cents))
        .where(account_filter)
        .group_by(JournalLine.account_id, JournalLine.location_id)
    )
    if start is not None or end is not None:
        stmt = stmt.join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        bounds = []
        if start is not None:
            bounds.append(JournalEntry.entry_date >= start)
        if end is not None:
            bounds.append(JournalEntry.entry_date <= end)
        stmt = stmt.where(~and_(*bounds) if invert else and_(*bounds))
    if sc.location_id is not None:
        stmt = stmt.where(JournalLine.location_id == sc.location_id)
    if member_only:
        stmt = stmt.where(JournalLine.member_id.is_not(None))  # type: ignore[union-attr]
    if debits_only:
        stmt = stmt.where(JournalLine.amount_cents > 0)
    return {(accounts[acct], loc): int(total or 0)
            for acct, loc, total in session.execute(stmt)}


def _balances_at(session: Session, accounts: Mapping[int, str], sc: _Scope,
                 end: date) -> dict[tuple[str, int], int]:
    """Balances through ``end`` (whole months from the monthly totals, the last one partly
    from journal lines)."""
    return _ledger_sums(session, accounts, sc, start=None, end=end)


def _by(sums: Mapping[tuple[str, int], int], index: int, sc: _Scope,
        sign: int = 1) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for key, cents in sums.items():
        label = key[0] if index == 0 else sc.codes.get(key[1], str(key[1]))
        out[label] += sign * cents
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- building blocks


def desk_type_accounts(chart: Chart | None) -> dict[str, str]:
    """Desk type -> membership revenue account (the chart's ``line_kind_accounts``)."""
    mapping = (chart.line_kind_accounts.get("membership") if chart is not None else None)
    if isinstance(mapping, dict):
        return {str(k): str(v) for k, v in mapping.items()}
    return dict(DEFAULT_DESK_TYPE_ACCOUNTS)


def mrr_parts(session: Session, day: date, *, location_id: int | None = None,
              desk_type: str | None = None) -> dict[tuple[int, str], Decimal]:
    """Monthly recurring charges in service on ``day`` per (location id, desk type), exact."""
    stmt = (
        select(Subscription.location_id, Plan.desk_type, Plan.interval,
               func.sum(Subscription.unit_price_cents * Subscription.quantity))
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(in_service_on(day))
        .group_by(Subscription.location_id, Plan.desk_type, Plan.interval)
    )
    if location_id is not None:
        stmt = stmt.where(Subscription.location_id == location_id)
    if desk_type is not None:
        stmt = stmt.where(Plan.desk_type == desk_type)
    parts: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for loc, dtype, interval, total in session.execute(stmt):
        amount = Decimal(int(total or 0))
        parts[(loc, dtype)] += amount / 12 if interval == Interval.YEAR else amount
    return dict(parts)


def mrr_cents(session: Session, day: date, *, location_id: int | None = None,
              desk_type: str | None = None) -> int:
    """Active recurring plan charges on ``day``, normalized to a month (yearly ÷ 12)."""
    parts = mrr_parts(session, day, location_id=location_id, desk_type=desk_type)
    return round_half_up(sum(parts.values(), Decimal(0)))


def active_member_count(session: Session, day: date, *, location_id: int | None = None,
                        desk_type: str | None = None) -> int:
    """Distinct members with a subscription in service on ``day``."""
    stmt = select(func.count(func.distinct(Subscription.member_id))).where(in_service_on(day))
    if location_id is not None:
        stmt = stmt.where(Subscription.location_id == location_id)
    if desk_type is not None:
        stmt = stmt.join(Plan, Plan.id == Subscription.plan_id).where(Plan.desk_type == desk_type)
    return int(session.execute(stmt).scalar_one())


def member_days(session: Session, start: date, end: date, *, location_id: int | None = None,
                desk_type: str | None = None) -> int:
    """Σ over days in [start, end] of the members in service that day (each member once a
    day, however many subscriptions they hold)."""
    stmt = (
        select(Subscription.member_id, Subscription.start_date, Subscription.end_date)
        .where(_overlaps(start, end))
        .order_by(Subscription.member_id, Subscription.start_date)
    )
    if location_id is not None:
        stmt = stmt.where(Subscription.location_id == location_id)
    if desk_type is not None:
        stmt = stmt.join(Plan, Plan.id == Subscription.plan_id).where(Plan.desk_type == desk_type)
    total = 0
    member: int | None = None
    covered_to = start  # last day counted for the current member
    for member_id, first, last in session.execute(stmt):
        lo, hi = max(first, start), min(last or end, end)
        if member_id != member:
            member, covered_to = member_id, lo - timedelta(days=1)
        lo = max(lo, covered_to + timedelta(days=1))
        if hi >= lo:
            total += (hi - lo).days + 1
            covered_to = hi
    return total


def revenue_sums(session: Session, sc: _Scope, chart: Chart | None, *,
                 member_only: bool = False) -> dict[tuple[str, int], int]:
    """Credit-positive recognized revenue per (account code, location id) in the range."""
    if sc.desk_type is not None:
        code = desk_type_accounts(chart).get(sc.desk_type)
        accounts = _account_ids(session, codes=[code] if code else [])
    else:
        accounts = _account_ids(session, kind="revenue")
    sums = _ledger_sums(session, accounts, sc, start=sc.start, end=sc.end,
                        member_only=member_only)
    return {k: -v for k, v in sums.items()}


def revenue_cents(session: Session, start: date, end: date, *,
                  location_id: int | None = None) -> int:
    """Recognized revenue over [start, end] (revenue accounts net of contra), in cents."""
    sc = _Scope(start, end, location_id, None, None, "USD", {})
    return sum(revenue_sums(session, sc, None).values())


def budget_target_cents(session: Session, month: str, *, location_id: int | None = None,
                        metric: str = "mrr") -> int | None:
    """The budget target of a month: the location's row; for all locations the row without
    a location, else the sum of the per-location rows; None when there is none."""
    stmt = select(BudgetTarget.location_id, BudgetTarget.amount_cents).where(
        BudgetTarget.month == month, BudgetTarget.metric == metric)
    rows = session.execute(stmt).all()
    if location_id is not None:
        found = [r.amount_cents for r in rows if r.location_id == location_id]
        return found[0] if found else None
    whole = [r.amount_cents for r in rows if r.location_id is None]
    if whole:
        return whole[0]
    return sum(r.amount_cents for r in rows) if rows else None


# --------------------------------------------------------------------------- the KPIs


def _occupancy_rate(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Occupied seats ÷ available seats, averaged over the days of the range."""
    desk_types = [sc.desk_type] if sc.desk_type else list(SEATED_DESK_TYPES)
    days = _days_in_service(session, sc.start, sc.end)
    occ_stmt = (
        select(Subscription.location_id, Plan.desk_type,
               func.sum(Subscription.quantity * days))
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(_overlaps(sc.start, sc.end), Plan.desk_type.in_(desk_types))  # type: ignore[attr-defined]
        .group_by(Subscription.location_id, Plan.desk_type)
    )
    cap_stmt = (
        select(Resource.location_id, Resource.desk_type, func.sum(Resource.capacity))
        .where(Resource.active.is_(True),  # type: ignore[attr-defined]
               Resource.kind.in_([ResourceKind.DESK.value, ResourceKind.OFFICE.value]),  # type: ignore[attr-defined]
               Resource.desk_type.in_(desk_types))  # type: ignore[union-attr]
        .group_by(Resource.location_id, Resource.desk_type)
    )
    if sc.location_id is not None:
        occ_stmt = occ_stmt.where(Subscription.location_id == sc.location_id)
        cap_stmt = cap_stmt.where(Resource.location_id == sc.location_id)
    occupied = {(loc, dt): int(v or 0) for loc, dt, v in session.execute(occ_stmt)}
    available = {(loc, dt): int(v or 0) * sc.days for loc, dt, v in session.execute(cap_stmt)}
    keys = sorted(set(occupied) | set(available), key=lambda k: (sc.codes.get(k[0], ""), k[1]))
    rows = [{"location": sc.codes.get(loc, str(loc)), "desk_type": dt,
             "occupied_seat_days": occupied.get((loc, dt), 0),
             "available_seat_days": available.get((loc, dt), 0),
             "rate_ppm": ratio_ppm(occupied.get((loc, dt), 0), available.get((loc, dt), 0))}
            for loc, dt in keys]

    def group(key: str) -> dict[str, int | None]:
        occ: dict[str, int] = defaultdict(int)
        cap: dict[str, int] = defaultdict(int)
        for r in rows:
            occ[r[key]] += r["occupied_seat_days"]  # type: ignore[index]
            cap[r[key]] += r["available_seat_days"]  # type: ignore[index]
        return {k: ratio_ppm(occ[k], cap[k]) for k in sorted(occ)}

    total_occ = sum(occupied.values())
    total_cap = sum(available.values())
    value = ratio_ppm(total_occ, total_cap)
    return _result(sc, "occupancy_rate", value, {
        "occupied_seat_days": total_occ, "available_seat_days": total_cap,
        "by_desk_type": group("desk_type"), "by_location": group("location"), "rows": rows,
    }, note=None if value is not None else "no desks or offices to occupy in this scope")


def _mrr(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Active recurring plan charges on the last day of the range, normalized to a month."""
    parts = mrr_parts(session, sc.end, location_id=sc.location_id, desk_type=sc.desk_type)
    by_desk: dict[str, Decimal] = defaultdict(Decimal)
    by_loc: dict[str, Decimal] = defaultdict(Decimal)
    for (loc, dtype), amount in parts.items():
        by_desk[dtype] += amount
        by_loc[sc.codes.get(loc, str(loc))] += amount
    value = round_half_up(sum(parts.values(), Decimal(0)))
    return _result(sc, "mrr", value, {
        "as_of": sc.end.isoformat(),
        "by_desk_type": {k: round_half_up(v) for k, v in sorted(by_desk.items())},
        "by_location": {k: round_half_up(v) for k, v in sorted(by_loc.items())},
    })


def _mrr_vs_plan(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """MRR at range end minus that month's MRR budget target (value None without one)."""
    actual = mrr_cents(session, sc.end, location_id=sc.location_id)
    month = month_of(sc.end)
    target = budget_target_cents(session, month, location_id=sc.location_id)
    if target is None:
        return _result(sc, "mrr_vs_plan", None, {"month": month, "actual_cents": actual,
                                                 "plan_cents": None},
                       note=f"no MRR budget target for {month} "
                            f"({sc.location_code or 'all locations'})")
    return _result(sc, "mrr_vs_plan", actual - target, {
        "month": month, "actual_cents": actual, "plan_cents": target,
        "variance_cents": actual - target, "attainment_ppm": ratio_ppm(actual, target),
    })


def _arpm(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Recognized member revenue in the range ÷ average active members in the range."""
    revenue = sum(revenue_sums(session, sc, chart, member_only=True).values())
    mdays = member_days(session, sc.start, sc.end, location_id=sc.location_id,
                        desk_type=sc.desk_type)
    average = Decimal(mdays) / sc.days
    value = round_half_up(Decimal(revenue) / average) if mdays else None
    return _result(sc, "arpm", value, {
        "member_revenue_cents": revenue, "member_days": mdays, "days": sc.days,
        "average_active_members": str(average.quantize(Decimal("0.01"),
                                                       rounding=ROUND_HALF_UP)),
    }, note=None if mdays else "no active members in the range")


def _revenue(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Recognized revenue in the range, by account (revenue accounts net of 4900)."""
    sums = revenue_sums(session, sc, chart)
    return _result(sc, "revenue", sum(sums.values()), {
        "by_account": _by(sums, 0, sc), "by_location": _by(sums, 1, sc),
    })


def _expense_ratio(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Operating expenses (every expense account) ÷ recognized revenue in the range."""
    expense_ids = _account_ids(session, kind="expense")
    revenue_ids = _account_ids(session, kind="revenue")
    sums = _ledger_sums(session, expense_ids | revenue_ids, sc, start=sc.start, end=sc.end)
    expense_codes = set(expense_ids.values())
    expenses = {k: v for k, v in sums.items() if k[0] in expense_codes}
    revenue = -sum(v for k, v in sums.items() if k[0] not in expense_codes)
    total = sum(expenses.values())
    value = ratio_ppm(total, revenue) if revenue > 0 else None
    return _result(sc, "expense_ratio", value, {
        "expenses_cents": total, "revenue_cents": revenue,
        "expenses_by_account": _by(expenses, 0, sc),
    }, note=None if value is not None else "no revenue in the range")


def _cash_burn(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Net decrease of the cash accounts over the range (negative = cash grew)."""
    sums = _ledger_sums(session, _account_ids(session, codes=CASH_ACCOUNTS), sc,
                        start=sc.start, end=sc.end)
    return _result(sc, "cash_burn", -sum(sums.values()), {
        "change_by_account": _by(sums, 0, sc), "change_by_location": _by(sums, 1, sc),
    })


def _dso(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """A/R at range end ÷ credit sales in the range × days in the range."""
    ar_acct = _account_ids(session, codes=[RECEIVABLE_ACCOUNT])
    receivable = sum(_balances_at(session, ar_acct, sc, sc.end).values())
    sales = sum(_ledger_sums(session, ar_acct, sc, start=sc.start, end=sc.end,
                             debits_only=True).values())
    value = None
    if sales > 0:
        value = (Decimal(receivable) * sc.days / sales).quantize(Decimal("0.1"),
                                                                rounding=ROUND_HALF_UP)
    return _result(sc, "dso", value, {
        "receivable_cents": receivable, "credit_sales_cents": sales, "days": sc.days,
    }, note=None if value is not None else "no credit sales in the range")


def _invoice_error_rate(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Credit notes issued ÷ invoices issued in the range."""
    inv = select(func.count(Invoice.id), func.sum(case(
        (Invoice.status == InvoiceStatus.VOID.value, 1), else_=0))).where(
        Invoice.issue_date >= sc.start, Invoice.issue_date <= sc.end)  # type: ignore[operator]
    notes = select(func.count(CreditNote.id)).where(
        CreditNote.issue_date >= sc.start, CreditNote.issue_date <= sc.end)
    if sc.location_id is not None:
        inv = inv.where(Invoice.location_id == sc.location_id)
        notes = notes.where(CreditNote.location_id == sc.location_id)
    issued, voided = session.execute(inv).one()
    credit_notes = int(session.execute(notes).scalar_one())
    value = ratio_ppm(credit_notes, int(issued))
    return _result(sc, "invoice_error_rate", value, {
        "credit_notes": credit_notes, "invoices_issued": int(issued),
        "invoices_voided": int(voided or 0),
    }, note=None if value is not None else "no invoices issued in the range")


def _active_members(session: Session, sc: _Scope, chart: Chart | None) -> KpiResult:
    """Distinct members with a subscription in service on the last day of the range."""
    value = active_member_count(session, sc.end, location_id=sc.location_id,
                                desk_type=sc.desk_type)
    by_desk = {}
    if sc.desk_type is None:
        stmt = (select(Plan.desk_type, func.count(func.distinct(Subscription.member_id)))
                .join(Plan, Plan.id == Subscription.plan_id).where(in_service_on(sc.end))
                .group_by(Plan.desk_type))
        if sc.location_id is not None:
            stmt = stmt.where(Subscription.location_id == sc.location_id)
        by_desk = {dt: int(n) for dt, n in session.execute(stmt)}
    return _result(sc, "active_members", value, {"as_of": sc.end.isoformat(),
                                                 "by_desk_type": dict(sorted(by_desk.items()))})


_KPIS = {
    "occupancy_rate": _occupancy_rate, "mrr": _mrr, "mrr_vs_plan": _mrr_vs_plan,
    "arpm": _arpm, "revenue": _revenue, "expense_ratio": _expense_ratio,
    "cash_burn": _cash_burn, "dso": _dso, "invoice_error_rate": _invoice_error_rate,
    "active_members": _active_members,
}


def _result(sc: _Scope, name: str, value: int | Decimal | None, breakdown: dict[str, Any],
            note: str | None = None) -> KpiResult:
    return KpiResult(name=name, value=value, unit=UNITS[name], start=sc.start, end=sc.end,
                     location=sc.location_code, desk_type=sc.desk_type, currency=sc.currency,
                     definition=DEFINITIONS[name], breakdown=breakdown, note=note)


# --------------------------------------------------------------------------- public API


@contextmanager
def session_for(source: Any) -> Iterator[tuple[Session, Chart | None]]:
    """A session and chart from Services (a new read session) or from a Session."""
    if isinstance(source, Session):
        yield source, None
        return
    chart = getattr(source, "chart", None)
    with source.session() as session:
        yield session, chart


def compute_kpi(source: Any, name: str, start: date, end: date, *,
                location: str | int | None = None, desk_type: str | None = None,
                chart: Chart | None = None) -> KpiResult:
    """One KPI of DESIGN §6 over [start, end] (inclusive), optionally for one location (code,
    name or id) and desk type. ``source`` is the Services or an open Session."""
    with session_for(source) as (session, own_chart):
        sc = _scope(session, name, start, end, location, desk_type)
        return _KPIS[name](session, sc, chart or own_chart)


def kpi_series(source: Any, name: str, months: Sequence[str], *,
               location: str | int | None = None, desk_type: str | None = None,
               chart: Chart | None = None) -> list[tuple[str, int | Decimal | None]]:
    """The KPI for each calendar month of ``months`` (YYYY-MM): ``[(month, value), ...]``."""
    return [(month, r.value) for month, r in kpi_series_results(
        source, name, months, location=location, desk_type=desk_type, chart=chart)]


def kpi_series_results(source: Any, name: str, months: Sequence[str], *,
                       location: str | int | None = None, desk_type: str | None = None,
                       chart: Chart | None = None) -> list[tuple[str, KpiResult]]:
    """Like :func:`kpi_series` with the full result (breakdown, note) of every month."""
    with session_for(source) as (session, own_chart):
        return [(month, compute_kpi(session, name, month_start(month), month_end(month),
                                    location=location, desk_type=desk_type,
                                    chart=chart or own_chart))
                for month in months]


# --------------------------------------------------------------------------- A/R aging

AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")


def ar_aging(source: Any, as_of: date, *, location: str | int | None = None) -> dict[str, int]:
    """Amounts due on open invoices issued by ``as_of``, by days past due on ``as_of``.

    Uses the invoices' present state (amount paid and credit applied so far): an aging of
    today's open items, counted from ``as_of``. Buckets: current (not yet due), 1–30, 31–60,
    61–90, 90+ days past due.
    """
    with session_for(source) as (session, _):
        sc = _scope(session, "dso", as_of, as_of, location, None)
        due = Invoice.total_cents - Invoice.credit_applied_cents - Invoice.amount_paid_cents
        stmt = (select(Invoice.due_date, func.sum(due))
                .where(Invoice.status == InvoiceStatus.OPEN.value,
                       Invoice.issue_date <= as_of)  # type: ignore[operator]
                .group_by(Invoice.due_date))
        if sc.location_id is not None:
            stmt = stmt.where(Invoice.location_id == sc.location_id)
        buckets = dict.fromkeys(AGING_BUCKETS, 0)
        for due_date, cents in session.execute(stmt):
            late = (as_of - due_date).days if due_date is not None else 0
            bucket = ("current" if late <= 0 else "1-30" if late <= 30 else "31-60"
                      if late <= 60 else "61-90" if late <= 90 else "90+")
            buckets[bucket] += int(cents or 0)
        return buckets
