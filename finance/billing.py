"""The billing engine: what each member owes for a period, as drafts, then issued and posted.

What a run for month P bills (one invoice per member and location):

- **in advance**: every billing period of a subscription that starts in P, in full, if the
  subscription is in service on that first day;
- **in arrears, for events dated in P-1**: a subscription that started mid-period is charged
  for the rest of that period (first-period proration, or the new plan's side of a change); a
  subscription that ended mid-period is credited for the unused rest (a cancellation, or the
  old plan's side of a change). Because each event is billed in the run for the month after it,
  every event is billed exactly once and a quote equals the invoice that follows it;
- **usage in arrears**: unbilled print / coffee-bar / day-pass events and meeting-room bookings
  that ended before P started (in the location's time zone); late arrivals are picked up by the
  next run;
- **deposits**: the plan's security deposit, in the run that first bills a new subscription,
  unless the member already holds one at that location.

Runs are idempotent: each invoice has the key ``bill:<period>:<member>:<location>``; a run for
a (period, scope) happens once (``billing_run`` unique key), and usage rows point at the line
that billed them. Drafts become invoices only when a manager approves and issues them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    MetaData,
    String,
    Table,
    and_,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finance import audit, ledger, proration
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.bulk import insert_tuples, reserve_ids, update_rows, where_ids
from finance.ledger import Chart, EntryDraft, Leg
from finance.models import (
    BillingRun,
    Booking,
    Deposit,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    Location,
    Plan,
    Resource,
    Subscription,
    UsageEvent,
    UsageKind,
)
from finance.money import allocate
from finance.proration import BillingPeriod, PlanItem
from finance.settings import Settings
from finance.summary import month_bounds
from finance.tax import TaxTable, tax_on

_DAY = timedelta(days=1)
USAGE_LINE_KINDS = {
    UsageKind.PRINT: (LineKind.PRINTING, "Printing", "page"),
    UsageKind.COFFEE: (LineKind.FOOD_BEVERAGE, "Coffee bar", "item"),
    UsageKind.DAY_PASS: (LineKind.DAY_PASS, "Day pass", "pass"),
}


_INVOICE_COLUMNS = ("id", "idempotency_key", "member_id", "location_id", "billing_run_id",
                    "period", "status", "subtotal_cents", "tax_cents", "total_cents",
                    "credit_applied_cents", "amount_paid_cents", "currency")
_LINE_COLUMNS = ("id", "invoice_id", "kind", "description", "quantity", "unit_price_cents",
                 "amount_cents", "tax_rate_ppm", "tax_cents", "account_code", "deferred_cents",
                 "location_id", "service_start", "service_end", "subscription_id")


class BillingError(ValueError):
    """A billing request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class BillingPolicy:
    rule: proration.ProrationRule = "actual_days"
    downgrade: proration.DowngradeTiming = "period_end"
    invoice_prefix: str = "INV"
    payment_terms_days: int = 14

    @classmethod
    def from_settings(cls, settings: Settings) -> BillingPolicy:
        return cls(settings.proration_rule, settings.downgrade_timing, settings.invoice_prefix)


@dataclass(frozen=True)
class DraftLine:
    kind: str
    description: str
    amount_cents: int
    tax_rate_ppm: int
    tax_cents: int
    account_code: str
    location_id: int
    quantity: Decimal = Decimal(1)
    unit_price_cents: int | None = None
    service_start: date | None = None
    service_end: date | None = None  # inclusive
    subscription_id: int | None = None
    usage_event_ids: tuple[int, ...] = ()
    booking_ids: tuple[int, ...] = ()


@dataclass
class DraftInvoice:
    member_id: int
    location_id: int
    period: str
    lines: list[DraftLine] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"bill:{self.period}:{self.member_id}:{self.location_id}"

    @property
    def subtotal_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)

    @property
    def tax_cents(self) -> int:
        return sum(line.tax_cents for line in self.lines)

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents + self.tax_cents


@dataclass(frozen=True)
class RunResult:
    period: str
    scope: str
    dry_run: bool
    already_run: bool
    invoices: tuple[DraftInvoice, ...]
    invoice_ids: tuple[int, ...] = ()

    @property
    def total_cents(self) -> int:
        return sum(inv.total_cents for inv in self.invoices)

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, int] = defaultdict(int)
        for inv in self.invoices:
            for line in inv.lines:
                by_kind[line.kind] += line.amount_cents
        return {
            "period": self.period,
            "scope": self.scope,
            "dry_run": self.dry_run,
            "already_run": self.already_run,
            "invoices": len(self.invoices),
            "subtotal_cents": sum(i.subtotal_cents for i in self.invoices),
            "tax_cents": sum(i.tax_cents for i in self.invoices),
            "total_cents": self.total_cents,
            "by_line_kind_cents": dict(sorted(by_kind.items())),
            "invoice_ids": list(self.invoice_ids),
        }


def parse_period(period: str) -> tuple[date, date]:
    try:
        return month_bounds(period)
    except (ValueError, TypeError):
        raise BillingError(f"period must look like YYYY-MM, got {period!r}") from None


def _month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def plan_item(plan: Plan, sub: Subscription) -> PlanItem:
    return PlanItem(plan.name, sub.unit_price_cents, sub.quantity)


def period_of_subscription(sub: Subscription, plan: Plan, on: date) -> BillingPeriod:
    """The billing period of ``sub`` containing ``on`` (yearly plans anchor on their start)."""
    if plan.interval == Interval.YEAR:
        return _billing_period(sub.billing_anchor_day, on, "year", sub.start_date.month)
    return _billing_period(sub.billing_anchor_day, on, "month", 1)


@lru_cache(maxsize=8192)
def _billing_period(anchor_day: int, on: date, interval: proration.Interval,
                    anchor_month: int) -> BillingPeriod:
    # a run asks for the same few periods for thousands of subscriptions (values are frozen)
    return proration.billing_period(anchor_day, on, interval=interval, anchor_month=anchor_month)


@lru_cache(maxsize=4096)
def _plan_item(name: str, unit_price_cents: int, quantity: int) -> PlanItem:
    return PlanItem(name, unit_price_cents, quantity)


@lru_cache(maxsize=65536)
def _tax_on(amount_cents: int, rate_ppm: int) -> int:
    return tax_on(amount_cents, rate_ppm)


def _unbilled_usage(cutoff: dict[int, datetime], location_id: int | None) -> Any:
    """The usage events a run bills: unbilled, billable kinds, a quantity, and before the
    start of the period at their location. Computing and linking use this one condition."""
    if location_id is not None:
        cutoff = {loc: at for loc, at in cutoff.items() if loc == location_id}
    if not cutoff:
        return None
    ev = UsageEvent.__table__.c  # type: ignore[attr-defined]
    return and_(
        ev.invoice_line_id.is_(None),
        ev.kind.in_([k.value for k in USAGE_LINE_KINDS]),
        ev.quantity > 0,
        or_(*(and_(ev.location_id == loc, ev.occurred_at < at)
              for loc, at in sorted(cutoff.items()))),
    )


class BillingEngine:
    """Computes, stores, approves and issues invoices; one engine serves quotes and runs."""

    def __init__(self, chart: Chart, policy: BillingPolicy) -> None:
        self.chart = chart
        self.policy = policy

    # ------------------------------------------------------------------ computing

    def compute(
        self, session: Session, period: str, *, location_id: int | None = None
    ) -> list[DraftInvoice]:
        """Every invoice the run for ``period`` would create (nothing is written)."""
        p_start, p_end = parse_period(period)
        prev_start = (p_start - _DAY).replace(day=1)
        taxes = TaxTable.load(session)
        plans = {p.id: p for p in session.execute(select(Plan)).scalars()}
        drafts: dict[tuple[int, int], DraftInvoice] = {}

        def draft_for(member_id: int, loc: int) -> DraftInvoice:
            key = (member_id, loc)
            if key not in drafts:
                drafts[key] = DraftInvoice(member_id, loc, period)
            return drafts[key]

        # plain rows, not ORM objects: the lines read a handful of attributes from each
        subs_stmt = select(
            Subscription.id, Subscription.member_id, Subscription.plan_id,
            Subscription.location_id, Subscription.quantity, Subscription.unit_price_cents,
            Subscription.start_date, Subscription.end_date, Subscription.billing_anchor_day,
            Subscription.replaces_id,
        ).where(
            Subscription.start_date <= p_end,
            or_(Subscription.end_date.is_(None),  # type: ignore[union-attr]
                Subscription.end_date >= prev_start - timedelta(days=400)),
        )
        if location_id is not None:
            subs_stmt = subs_stmt.where(Subscription.location_id == location_id)
        subs = session.execute(subs_stmt.order_by(Subscription.id)).all()
        successors = {s.replaces_id for s in subs if s.replaces_id is not None}
        held = self._held_deposits(session)
        billed = self._advance_billed(session, prev_start, p_start - _DAY)
        for sub in subs:
            plan = plans[sub.plan_id]
            for line in self._subscription_lines(sub, plan, p_start, p_end, prev_start, taxes,
                                                 replaced=sub.id in successors,
                                                 held_deposit=(sub.member_id, sub.location_id) in held,
                                                 billed=billed):
                if line.amount_cents:  # a fraction worth less than half a cent bills nothing
                    draft_for(sub.member_id, sub.location_id).lines.append(line)

        cutoff = self._local_cutoffs(session, p_start)
        for line, member_id in self._usage_lines(session, cutoff, taxes, p_start, location_id):
            draft_for(member_id, line.location_id).lines.append(line)
        for line, member_id in self._booking_lines(session, cutoff, taxes, p_start, location_id):
            draft_for(member_id, line.location_id).lines.append(line)

        existing = set(
            session.execute(
                select(Invoice.idempotency_key).where(Invoice.period == period)
            ).scalars()
        )
        return [
            d for key, d in sorted(drafts.items())
            if d.lines and d.key not in existing
        ]

    def _subscription_lines(
        self,
        sub: Subscription,
        plan: Plan,
        p_start: date,
        p_end: date,
        prev_start: date,
        taxes: TaxTable,
        *,
        replaced: bool,
        held_deposit: bool,
        billed: set[tuple[int, date]] | None,
    ) -> Iterable[DraftLine]:
        item = _plan_item(plan.name, sub.unit_price_cents, sub.quantity)
        rule = self.policy.rule
        loc = sub.location_id
        prev_end = p_start - _DAY
        # in advance: billing periods of this subscription starting in P
        first = period_of_subscription(sub, plan, p_start)
        if first.start < p_start:
            first = period_of_subscription(sub, plan, first.end + _DAY)
        if first.start <= p_end and _in_service(sub, first.start):
            kind = LineKind.MEMBERSHIP
            account = self.chart.revenue_account(kind, plan.desk_type)
            rate = taxes.rate_ppm(loc, kind, first.start)
            amount = item.amount_cents
            yield DraftLine(
                kind, f"{item.label} ({first.start:%b %d} – {first.end:%b %d, %Y})", amount,
                rate, _tax_on(amount, rate), account, loc, Decimal(sub.quantity),
                sub.unit_price_cents, first.start, first.end, sub.id,
            )
        # catch-up for the advance period that started in P-1, when P-1 was billed: a
        # subscription entered (or changed) after that run is charged or credited in full now
        prior = period_of_subscription(sub, plan, prev_start)
        if prior.start < prev_start:
            prior = period_of_subscription(sub, plan, prior.end + _DAY)
        if billed is not None and prior.start <= prev_end:
            was_billed = (sub.id, prior.start) in billed
            serving = _in_service(sub, prior.start)
            if serving and not was_billed:
                kind = LineKind.PRORATION if sub.replaces_id else LineKind.MEMBERSHIP
                label = ("Remaining time on " if sub.replaces_id else "") + item.label
                yield self._full_period(kind, label, item, sub, plan, prior, taxes, 1)
            elif was_billed and not serving:
                label = "Unused time on " + item.label
                yield self._full_period(LineKind.PRORATION, label, item, sub, plan, prior,
                                        taxes, -1)
        # in arrears: a mid-period start in P-1
        start_period = period_of_subscription(sub, plan, sub.start_date)
        if prev_start <= sub.start_date <= prev_end and sub.start_date != start_period.start:
            yield self._fragment(
                proration.prorate_join(item, start_period, sub.start_date, rule=rule),
                sub, taxes, "Remaining time on " + item.label if sub.replaces_id
                else f"{item.label}, prorated first period",
            )
        # in arrears: a mid-period end whose effective day (the day after the last day of
        # service) falls in P-1, so both sides of a change land on the same invoice
        if sub.end_date is not None and prev_start <= sub.end_date + _DAY <= prev_end:
            end_period = period_of_subscription(sub, plan, sub.end_date)
            if sub.end_date != end_period.end:
                yield self._fragment(
                    proration.prorate_cancel(item, end_period, sub.end_date, rule=rule),
                    sub, taxes, "Unused time on " + item.label if replaced
                    else f"Unused time on {item.label} after cancellation",
                )
        # deposit with the first charge of a new subscription
        if plan.deposit_cents and sub.replaces_id is None and not held_deposit:
            first_billed = (sub.start_date if sub.start_date == start_period.start
                            else sub.start_date.replace(day=1) + timedelta(days=32))
            if _month_of(first_billed) == _month_of(p_start):
                account = self.chart.revenue_account(LineKind.DEPOSIT)
                yield DraftLine(
                    LineKind.DEPOSIT, f"Security deposit ({plan.name})", plan.deposit_cents,
                    0, 0, account, loc, subscription_id=sub.id,
                    unit_price_cents=plan.deposit_cents,
                )

    def _full_period(
        self, kind: LineKind, label: str, item: PlanItem, sub: Subscription, plan: Plan,
        period: BillingPeriod, taxes: TaxTable, sign: int,
    ) -> DraftLine:
        amount = sign * item.amount_cents
        rate = taxes.rate_ppm(sub.location_id, kind, period.start)
        account = self.chart.revenue_account(kind, plan.desk_type)
        return DraftLine(
            kind, f"{label} ({period.start:%b %d} – {period.end:%b %d, %Y}, "
            f"{period.days}/{period.days})", amount, rate, _tax_on(amount, rate), account,
            sub.location_id, Decimal(sub.quantity), sub.unit_price_cents, period.start,
            period.end, sub.id,
        )

    def _advance_billed(
        self, session: Session, start: date, end: date
    ) -> set[tuple[int, date]] | None:
        """(subscription, period start) billed in advance for periods starting in [start, end];
        None when no billing run covered that month (nothing to catch up on)."""
        month = _month_of(start)
        if session.execute(select(BillingRun.id).where(BillingRun.period == month)).first() is None:
            return None
        stmt = (
            select(InvoiceLine.subscription_id, InvoiceLine.service_start, InvoiceLine.amount_cents)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(InvoiceLine.service_start >= start, InvoiceLine.service_start <= end,  # type: ignore[operator]
                   InvoiceLine.subscription_id.is_not(None),  # type: ignore[union-attr]
                   InvoiceLine.kind.in_([LineKind.MEMBERSHIP, LineKind.PRORATION]),  # type: ignore[attr-defined]
                   Invoice.status != InvoiceStatus.VOID)
        )
        totals: dict[tuple[int, date], int] = defaultdict(int)
        for sub_id, service_start, amount in session.execute(stmt):
            totals[(sub_id, service_start)] += amount
        return {key for key, total in totals.items() if total > 0}

    def _fragment(
        self, result: proration.Proration, sub: Subscription, taxes: TaxTable, description: str
    ) -> DraftLine:
        (line,) = result.lines
        kind = LineKind.PRORATION
        rate = taxes.rate_ppm(sub.location_id, kind, _as_date(line.service_start))
        end = _as_date(line.service_end)
        if isinstance(line.service_end, datetime):
            end -= _DAY  # per_second reports the exclusive end instant; invoices show the last day
        return DraftLine(
            kind, f"{description} ({_as_date(line.service_start):%b %d} – {end:%b %d, %Y}, "
            f"{line.fraction.numerator}/{line.fraction.denominator})",
            line.amount_cents, rate, _tax_on(line.amount_cents, rate),
            self.chart.revenue_account(kind), sub.location_id, Decimal(sub.quantity),
            sub.unit_price_cents, _as_date(line.service_start), end, sub.id,
        )

    def _held_deposits(self, session: Session) -> set[tuple[int, int]]:
        held = session.execute(
            select(Deposit.member_id, Deposit.location_id).where(Deposit.status == "held")
        ).all()
        pending = session.execute(
            select(Invoice.member_id, InvoiceLine.location_id)
            .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
            .where(InvoiceLine.kind == LineKind.DEPOSIT,
                   Invoice.status.in_([InvoiceStatus.DRAFT, InvoiceStatus.APPROVED]))  # type: ignore[attr-defined]
        ).all()
        return {(m, loc) for m, loc in [*held, *pending]}

    def _local_cutoffs(self, session: Session, p_start: date) -> dict[int, datetime]:
        """The instant P starts at each location (usage before it is billed in this run)."""
        return {
            loc.id: datetime.combine(p_start, time(0), ZoneInfo(loc.timezone)).astimezone(UTC)
            for loc in session.execute(select(Location)).scalars()
            if loc.id is not None
        }

    def _usage_lines(
        self, session: Session, cutoff: dict[int, datetime], taxes: TaxTable, p_start: date,
        location_id: int | None,
    ) -> Iterable[tuple[DraftLine, int]]:
        """One line per (member, location, kind, unit price) of unbilled events before the
        location's cutoff, grouped by the database (ids come back as one text per group)."""
        ev = UsageEvent.__table__.c  # type: ignore[attr-defined]
        unbilled = _unbilled_usage(cutoff, location_id)
        if unbilled is None:
            return
        if session.get_bind().dialect.name == "postgresql":
            ids = func.string_agg(cast(ev.id, String), ",")
            utc = func.timezone("UTC", ev.occurred_at)  # the UTC wall time, as at rest
            first, last = cast(func.min(utc), Date), cast(func.max(utc), Date)
        else:  # SQLite keeps UTC wall times as ISO text
            ids = func.group_concat(ev.id, ",")
            first = func.date(func.min(ev.occurred_at), type_=Date)
            last = func.date(func.max(ev.occurred_at), type_=Date)
        stmt = (
            select(ev.member_id, ev.location_id, ev.kind, ev.unit_price_cents,
                   func.sum(ev.quantity), first, last, ids)
            .where(unbilled)
            .group_by(ev.member_id, ev.location_id, ev.kind, ev.unit_price_cents)
        )
        groups = sorted(session.execute(stmt).all(), key=lambda g: tuple(g[:4]))
        billed_on = p_start - _DAY
        kinds = {k.value: spec for k, spec in USAGE_LINE_KINDS.items()}
        accounts = {kind: self.chart.revenue_account(kind) for kind, _, _ in kinds.values()}
        rates: dict[tuple[int, str], int] = {}
        for member, loc, kind, price, qty, first_day, last_day, id_text in groups:
            line_kind, label, unit = kinds[kind]
            rate = rates.get((loc, line_kind))
            if rate is None:
                rate = rates[(loc, line_kind)] = taxes.rate_ppm(loc, line_kind, billed_on)
            qty = int(qty)
            amount = qty * price
            line = DraftLine(
                line_kind, f"{label}: {qty} {unit}{'s' if qty != 1 else ''} × "
                f"${price // 100}.{price % 100:02d}", amount, rate, _tax_on(amount, rate),
                accounts[line_kind], loc, Decimal(qty), price, first_day, last_day,
                usage_event_ids=tuple(sorted(map(int, id_text.split(",")))),
            )
            yield line, member

    def _booking_lines(
        self, session: Session, cutoff: dict[int, datetime], taxes: TaxTable, p_start: date,
        location_id: int | None,
    ) -> Iterable[tuple[DraftLine, int]]:
        latest = max(cutoff.values(), default=datetime.now(UTC))
        stmt = (
            select(Booking, Resource.name)
            .join(Resource, Resource.id == Booking.resource_id)
            .where(
                Booking.invoice_line_id.is_(None),  # type: ignore[union-attr]
                Booking.status == "confirmed",
                Booking.amount_cents > 0,
                Booking.end_at < latest,
            )
            .order_by(Booking.start_at, Booking.id)
        )
        if location_id is not None:
            stmt = stmt.where(Booking.location_id == location_id)
        kind = LineKind.MEETING_ROOM
        for booking, room in session.execute(stmt):
            if booking.end_at >= cutoff.get(booking.location_id, latest):
                continue
            tz = _zone_of(session, booking.location_id)
            start, end = booking.start_at.astimezone(tz), booking.end_at.astimezone(tz)
            hours = Decimal((end - start).seconds // 60) / 60
            rate = taxes.rate_ppm(booking.location_id, kind, start.date())
            yield DraftLine(
                kind, f"{room}, {start:%b %d %H:%M}–{end:%H:%M}", booking.amount_cents, rate,
                _tax_on(booking.amount_cents, rate), self.chart.revenue_account(kind),
                booking.location_id, hours.quantize(Decimal("0.01")), None, start.date(),
                end.date(), booking_ids=(booking.id,),  # type: ignore[arg-type]
            ), booking.member_id

    # ------------------------------------------------------------------ running

    def run(
        self,
        session: Session,
        period: str,
        *,
        actor: Actor,
        location_code: str | None = None,
        dry_run: bool = True,
    ) -> RunResult:
        """Compute the period's invoices; unless ``dry_run``, store them as drafts.

        A second run of the same (period, scope) creates nothing; two concurrent runs are
        serialized by the unique ``billing_run`` key (the loser sees ``already_run``).
        """
        require_role(session, actor, FINANCE_WRITERS, "run billing")
        parse_period(period)
        location_id = None
        if location_code is not None:
            location_id = session.execute(
                select(Location.id).where(Location.code == location_code)
            ).scalar_one_or_none()
            if location_id is None:
                raise BillingError(f"no location with code {location_code!r}")
        scope = location_code or "all"
        done = session.execute(
            select(BillingRun).where(BillingRun.period == period, BillingRun.scope == scope)
        ).scalar_one_or_none()
        if done is not None:
            return RunResult(period, scope, dry_run, True, ())
        if dry_run:
            return RunResult(period, scope, True, False,
                             tuple(self.compute(session, period, location_id=location_id)))
        run = BillingRun(period=period, scope=scope, started_by=actor.label[:40])
        _begin_write(session)  # else SQLite commits the run row on its own at RELEASE
        try:
            with session.begin_nested():
                session.add(run)
                session.flush()
        except IntegrityError:
            return RunResult(period, scope, False, True, ())
        drafts = self.compute(session, period, location_id=location_id)
        try:
            ids = self._store(session, drafts, run.id, location_id)  # type: ignore[arg-type]
        except IntegrityError:  # a concurrent run of another scope drafted some of them
            raise BillingError(
                f"another billing run for {period} drafted invoices for some of these members "
                "at the same time; nothing was stored, run it again") from None
        run.status, run.invoices_created = "drafted", len(ids)
        run.finished_at = datetime.now(UTC)
        audit.record(session, actor=actor.label, action="billing.run", entity_type="billing_run",
                     entity_id=run.id, details={"period": period, "scope": scope,
                                                "invoices": len(ids)})
        session.flush()
        return RunResult(period, scope, False, False, tuple(drafts), tuple(ids))

    def _store(self, session: Session, drafts: Sequence[DraftInvoice], run_id: int,
               location_id: int | None) -> list[int]:
        if not drafts:
            return []
        conn = session.connection()
        ids = reserve_ids(session, Invoice.__table__, len(drafts))  # type: ignore[attr-defined]
        invoice_rows = []
        for inv_id, d in zip(ids, drafts, strict=True):
            subtotal, tax = d.subtotal_cents, d.tax_cents
            invoice_rows.append((inv_id, d.key, d.member_id, d.location_id, run_id, d.period,
                                 InvoiceStatus.DRAFT.value, subtotal, tax, subtotal + tax, 0, 0,
                                 "USD"))
        insert_tuples(conn, Invoice.__table__, _INVOICE_COLUMNS, invoice_rows)  # type: ignore[attr-defined]
        line_ids = iter(reserve_ids(session, InvoiceLine.__table__,  # type: ignore[attr-defined]
                                    sum(len(d.lines) for d in drafts)))
        line_rows, links = [], []  # links: (line id, member id, line)
        for inv_id, d in zip(ids, drafts, strict=True):
            for line in d.lines:
                line_id = next(line_ids)
                links.append((line_id, d.member_id, line))
                line_rows.append((
                    line_id, inv_id, str(line.kind), line.description[:300], line.quantity,
                    line.unit_price_cents or 0, line.amount_cents, line.tax_rate_ppm,
                    line.tax_cents, line.account_code, 0, line.location_id, line.service_start,
                    line.service_end, line.subscription_id))
        insert_tuples(conn, InvoiceLine.__table__, _LINE_COLUMNS, line_rows)  # type: ignore[attr-defined]
        self._link_usage(session, drafts[0].period, location_id,
                         [link for link in links if link[2].usage_event_ids])
        bookings = [{"b_id": b, "invoice_line_id": line_id}
                    for line_id, _, line in links for b in line.booking_ids]
        update_rows(session, Booking, bookings)
        return ids

    def _link_usage(self, session: Session, period: str, location_id: int | None,
                    lines: Sequence[tuple[int, int, DraftLine]]) -> None:
        """Point every usage event the new lines bill at its line, in one set-based UPDATE.

        A line bills all unbilled events of its (member, location, kind, unit price) before
        the cutoff, so a small temporary table of those keys joins the events to their lines.
        The UPDATE returns the ids it changed; they must be exactly the ids the lines were
        computed from, or the run fails and nothing is kept (an event that arrived or was
        billed by another run in between; on SQLite the run's write lock rules that out).
        """
        if not lines:
            return
        expected = [e for _, _, line in lines for e in line.usage_event_ids]
        unbilled = _unbilled_usage(self._local_cutoffs(session, parse_period(period)[0]),
                                   location_id)
        conn = session.connection()
        keys = Table("tmp_usage_line", MetaData(),
                     Column("member_id", BigInteger, primary_key=True),
                     Column("location_id", BigInteger, primary_key=True),
                     Column("kind", String(16), primary_key=True),
                     Column("unit_price_cents", BigInteger, primary_key=True),
                     Column("line_id", BigInteger, nullable=False), prefixes=["TEMPORARY"])
        usage_kind = {spec[0]: kind.value for kind, spec in USAGE_LINE_KINDS.items()}
        keys.create(conn, checkfirst=True)
        try:
            conn.execute(keys.delete())
            insert_tuples(conn, keys, ["member_id", "location_id", "kind", "unit_price_cents",
                                       "line_id"],
                          [(member_id, line.location_id, usage_kind[line.kind],
                            line.unit_price_cents, line_id) for line_id, member_id, line in lines])
            ev = UsageEvent.__table__.c  # type: ignore[attr-defined]
            stmt = (
                update(UsageEvent.__table__)  # type: ignore[attr-defined]
                .values(invoice_line_id=keys.c.line_id)
                .where(ev.member_id == keys.c.member_id, ev.location_id == keys.c.location_id,
                       ev.kind == keys.c.kind, ev.unit_price_cents == keys.c.unit_price_cents,
                       unbilled)
            )
            if conn.dialect.name == "sqlite":
                # the run holds the write lock since it inserted its billing_run row, before
                # computing: nothing can have changed, the count is a sanity check
                count = session.execute(stmt).rowcount  # type: ignore[attr-defined]
                exact = count == len(expected)
            else:  # read committed: compare the very ids
                changed = session.execute(stmt.returning(ev.id)).scalars().all()
                count = len(changed)
                exact = count == len(expected) and set(changed) == set(expected)
        finally:
            keys.drop(conn)
        if not exact:
            raise BillingError(
                f"usage changed while the {period} run was computing ({count} events matched, "
                f"{len(expected)} expected); nothing was stored, run it again")

    # ------------------------------------------------------------------ approving and issuing

    def approve(self, session: Session, invoice_ids: Sequence[int], *, actor: Actor) -> int:
        """Move drafts to approved; returns how many changed (re-approving changes nothing)."""
        require_role(session, actor, FINANCE_WRITERS, "approve invoices")
        changed = 0
        for ids_match in where_ids(Invoice.id, invoice_ids):
            result = session.execute(
                update(Invoice)
                .where(ids_match, Invoice.status == InvoiceStatus.DRAFT)
                .values(status=InvoiceStatus.APPROVED, approved_by=actor.label[:40])
            )
            changed += result.rowcount or 0
        if changed:
            audit.record(session, actor=actor.label, action="invoice.approve",
                         entity_type="invoice", details={"count": changed,
                                                         "ids": list(invoice_ids)[:50]})
        return changed

    def issue(
        self, session: Session, invoice_ids: Sequence[int], *, actor: Actor, on: date
    ) -> list[int]:
        """Issue approved invoices on ``on``: number them, post them, apply member credit.

        Issued invoices are immutable; corrections are credit notes or voids. Returns the ids
        issued now (already-issued ids are skipped, so a repeat changes nothing).
        """
        require_role(session, actor, FINANCE_WRITERS, "issue invoices")
        _begin_write(session)  # SQLite has no FOR UPDATE: a concurrent issuer waits here
        if ledger.is_locked(session, on):
            raise ledger.PeriodLocked(f"period {on:%Y-%m} is locked; issue into an open period")
        invoices = []
        for ids_match in where_ids(Invoice.id, invoice_ids):
            invoices += session.execute(
                select(Invoice.id, Invoice.member_id, Invoice.location_id, Invoice.total_cents)
                .where(ids_match, Invoice.status == InvoiceStatus.APPROVED)
                .order_by(Invoice.id).with_for_update()
            ).all()
        if not invoices:
            return []
        invoices.sort(key=lambda inv: inv.id)
        lines_by_invoice: dict[int, list[Any]] = defaultdict(list)
        for ids_match in where_ids(InvoiceLine.invoice_id, [i.id for i in invoices]):
            for line in session.execute(
                select(InvoiceLine.id, InvoiceLine.invoice_id, InvoiceLine.kind,
                       InvoiceLine.amount_cents, InvoiceLine.tax_cents, InvoiceLine.account_code,
                       InvoiceLine.location_id, InvoiceLine.service_start,
                       InvoiceLine.service_end, InvoiceLine.subscription_id)
                .where(ids_match).order_by(InvoiceLine.id)
            ):
                lines_by_invoice[line.invoice_id].append(line)
        credits = member_credit_balances(session, {i.member_id for i in invoices})
        numbers = next_numbers(session, "invoice", len(invoices))
        updates, deferred_updates, deposits, drafts = [], [], [], []
        month_end = (on.replace(day=28) + timedelta(days=4)).replace(day=1) - _DAY
        due = on + timedelta(days=self.policy.payment_terms_days)
        paid, open_ = InvoiceStatus.PAID.value, InvoiceStatus.OPEN.value
        deposit = LineKind.DEPOSIT.value
        for inv, number in zip(invoices, numbers, strict=True):
            inv_id, member_id, inv_loc, total = inv
            inv_number = f"{self.policy.invoice_prefix}-{on.year}-{number:06d}"
            available = credits.get(member_id, 0)
            applied = max(0, min(available, total))
            credits[member_id] = available - applied
            updates.append({
                "b_id": inv_id, "number": inv_number, "issue_date": on, "due_date": due,
                "credit_applied_cents": applied,
                "status": paid if total - applied <= 0 else open_,
            })
            # legs summed per (account, location) as they are found: every leg of an invoice
            # is the member's, in USD; the receivable leg comes first and carries the number
            receivable = ("1100", inv_loc)
            sums: dict[tuple[str, int], int] = {receivable: total}
            for line in lines_by_invoice[inv_id]:
                _, _, kind, amount, tax, account, loc, start, end, sub_id = line
                last = end or start
                # only service running past the month of issue is partly deferred
                deferred = deferred_part(line, on) if last is not None and last > month_end else 0
                if deferred:
                    deferred_updates.append({"b_id": line.id, "deferred_cents": deferred})
                    sums[("2200", loc)] = sums.get(("2200", loc), 0) - deferred
                if amount - deferred:
                    key = (account, loc)
                    sums[key] = sums.get(key, 0) - (amount - deferred)
                if tax:
                    sums[("2100", loc)] = sums.get(("2100", loc), 0) - tax
                if kind == deposit:
                    deposits.append({"member_id": member_id, "subscription_id": sub_id,
                                     "location_id": loc, "amount_cents": amount,
                                     "received_on": on, "refunded_cents": 0, "status": "held"})
            legs = [Leg(acct, cents, loc, member_id, None,
                        inv_number if (acct, loc) == receivable else None)
                    for (acct, loc), cents in sums.items() if cents]
            if legs:  # lines that cancel out (e.g. a same-price change) post nothing
                drafts.append((len(updates) - 1, EntryDraft(
                    on, f"Invoice {inv_number}", legs, source_type="invoice",
                    source_id=inv_id, idempotency_key=f"invoice:{inv_id}")))
        entry_ids = ledger.post_entries(session, [d for _, d in drafts], actor=actor.label,
                                        audit_each=False)
        for update_row in updates:
            update_row["journal_entry_id"] = None
        for (index, _), entry_id in zip(drafts, entry_ids, strict=True):
            updates[index]["journal_entry_id"] = entry_id
        update_rows(session, Invoice, updates)
        update_rows(session, InvoiceLine, deferred_updates)
        if deposits:
            session.execute(insert(Deposit.__table__), deposits)
        audit.record(session, actor=actor.label, action="invoice.issue", entity_type="invoice",
                     details={"count": len(invoices), "first": updates[0]["number"],
                              "last": updates[-1]["number"]})
        session.flush()
        return [i.id for i in invoices]

    def discard_draft(self, session: Session, invoice_id: int, *, actor: Actor) -> None:
        """Delete a draft (never an issued invoice) and release its usage for the next run."""
        require_role(session, actor, FINANCE_WRITERS, "discard invoices")
        inv = session.get(Invoice, invoice_id)
        if inv is None:
            raise BillingError(f"no invoice {invoice_id}")
        if inv.status not in (InvoiceStatus.DRAFT, InvoiceStatus.APPROVED):
            raise BillingError(f"invoice {inv.number} is issued; void it or credit it instead")
        release_usage(session, invoice_id)
        for line in session.execute(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
        ).scalars():
            session.delete(line)
        session.flush()  # the lines first: the unit of work does not know they reference it
        session.delete(inv)
        audit.record(session, actor=actor.label, action="invoice.discard", entity_type="invoice",
                     entity_id=invoice_id, details={"key": inv.idempotency_key})
        session.flush()


def _begin_write(session: Session) -> None:
    """Open the write transaction now on SQLite (``BEGIN IMMEDIATE``).

    The driver starts no transaction before a SAVEPOINT, and SQLite commits a savepoint
    that opened the transaction as soon as it is released: without this, a row written in
    the first ``begin_nested()`` would be committed even if the rest of the unit of work
    then fails. A no-op on PostgreSQL.
    """
    conn = session.connection()
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def release_usage(session: Session, invoice_id: int) -> None:
    """Unlink usage events and bookings from an invoice so the next run can bill them."""
    line_ids = select(InvoiceLine.id).where(InvoiceLine.invoice_id == invoice_id)
    for model in (UsageEvent, Booking):
        session.execute(
            update(model).where(model.invoice_line_id.in_(line_ids))  # type: ignore[attr-defined]
            .values(invoice_line_id=None)
        )


def deferred_part(line: InvoiceLine, issued_on: date) -> int:
    """The part of a line earned after the month of issue (posted to 2200 Deferred Revenue).

    The service period is split by calendar month in proportion to days (the parts sum to the
    line); the months up to the issue month are revenue at once, later months are deferred.
    """
    end = line.service_end or line.service_start
    if end is None or (end.year, end.month) <= (issued_on.year, issued_on.month):
        return 0  # earned by the end of the issue month: nothing to defer
    schedule = recognition_schedule(line)
    issue_month = _month_of(issued_on)
    return sum(cents for month, cents in schedule if month > issue_month)


def recognition_schedule(line: InvoiceLine) -> list[tuple[str, int]]:
    """(YYYY-MM, cents) slices of a line's service period, by days; one slice if none."""
    if line.kind == LineKind.DEPOSIT:
        return []
    if line.service_start is None or line.service_end is None:
        return [(_month_of(line.service_end or line.service_start or date.min), line.amount_cents)]
    months: list[str] = []
    days: list[int] = []
    day = line.service_start
    while day <= line.service_end:
        month_end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - _DAY
        stop = min(month_end, line.service_end)
        months.append(_month_of(day))
        days.append((stop - day).days + 1)
        day = stop + _DAY
    return list(zip(months, allocate(line.amount_cents, days), strict=True))


def member_credit_balances(session: Session, member_ids: set[int]) -> dict[int, int]:
    """Credit each member holds (a negative receivable), in cents, by member id."""
    if not member_ids:
        return {}
    out: dict[int, int] = {}
    for ids_match in where_ids(ledger.JournalLine.member_id, member_ids):
        stmt = (
            select(ledger.JournalLine.member_id, func.sum(ledger.JournalLine.amount_cents))
            .join(ledger.Account, ledger.Account.id == ledger.JournalLine.account_id)
            .where(ledger.Account.code == "1100", ids_match)
            .group_by(ledger.JournalLine.member_id)
        )
        for member_id, total in session.execute(stmt):
            if total and total < 0:
                out[member_id] = -int(total)
    return out


def next_numbers(session: Session, name: str, count: int) -> list[int]:
    """Reserve ``count`` consecutive document numbers; never reset, never reused.

    The row update takes a write lock, so concurrent issuers get disjoint ranges.
    """
    from finance.models import NumberSequence

    if count <= 0:
        return []
    table = NumberSequence.__table__  # type: ignore[attr-defined]
    result = session.execute(
        update(table).where(table.c.name == name)
        .values(last_value=table.c.last_value + count).returning(table.c.last_value)
    ).first()
    if result is None:
        try:
            with session.begin_nested():
                session.execute(insert(table).values(name=name, last_value=count))
            last = count
        except IntegrityError:  # created concurrently: take the update path
            return next_numbers(session, name, count)
    else:
        last = int(result[0])
    return list(range(last - count + 1, last + 1))


def _in_service(sub: Subscription, day: date) -> bool:
    return sub.start_date <= day and (sub.end_date is None or sub.end_date >= day)


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def _zone_of(session: Session, location_id: int) -> ZoneInfo:
    loc = session.get(Location, location_id)
    return ZoneInfo(loc.timezone if loc else "UTC")


