"""The demo space (DESIGN §10): a deterministic co-working business with months of real books.

``seed_demo`` builds three locations (Downtown, Riverside, Uptown), desks, offices and meeting
rooms, plans, members who join, upgrade, downgrade and leave, monthly invoices, payments and
card payouts, deposits, annual prepaid plans with revenue recognition, vendors, bills through
approvals, card expenses, payroll and budget targets. Every financial event is a balanced
journal entry with a location.

The receivables come from the real engine (finance.billing.BillingEngine): once the space,
members, subscriptions, usage and bookings are in, each demo month in order is run, approved
and issued on the 1st by the system actor ``system:demo``, so every month has a ``BillingRun``
and one invoice per member (key ``bill:<period>:<member id>:<location id>``, numbered from the
``invoice`` sequence) with the engine's lines, taxes, deposits and postings; the next billing
run carries on from them. Payments are posted like finance.receivables.record_payment, and
annual lines' deferred months are recognized on the 1st of each month
(``recognize:<line>:<YYYY-MM>``) like finance.receivables.recognize_revenue. The last month's
usage and changes are left for the next run.

It also plants one or more instances of every anomaly kind of DESIGN §5 and reports them in
:attr:`DemoSummary.planted` with the record ids involved, while keeping the rest of the data
clean of those patterns, so a detector's precision and recall can be measured on it:

- ``invoice_jump``: no monthly invoice but the planted one is more than 1.9x the median of
  its member's three previous invoices (upgrades fall late enough in the month, usage is
  capped, and a member whose quoted invoice would still be above loses that month's usage
  before the run bills it).
- ``duplicate_charge``: recurring vendors (rent, software, retainers) bill the same amount once
  a month on a steady day (>= 28 days apart); variable-amount vendors never have two charges
  within 0.6 % of each other in 90 days. So only the planted pairs are a same-vendor charge
  within 0.5 % less than 25 days apart; a detector should allow a monthly cadence.
- ``duplicate_receipt``: (vendor, date, total) and image hashes are unique except the planted
  pairs. (Planted pair #1 is, by nature, also a same-vendor/same-amount pair.)
- ``duplicate_customer``: member names, company email domains and tax ids are unique except
  Acme Design / ACME Design LLC. Persons use common free-mail domains.
- ``deposit_misposted``: every deposit refund debits 2300 except the planted one (3100).
- ``capex_as_opex``: items of $2,500 or more go to 1500/1510 except the planted chair.
- ``vendor_is_employee``: only the planted vendor shares a TIN / address with an employee.
- ``just_under_threshold``: no other bill falls in the 90-100 % band under $1,000 or $5,000.
- ``contractor_missing_tin``: the only TIN-less contractor paid by check/ACH is the planted
  one; Lena Fischer Design has no TIN but is paid by card only (1099-K, excluded by rule).
- ``unrecognized_deferred``: every started month of every annual line is recognized except
  the planted line's, which has no recognition entry at all.

Same (members, months, through, seed) gives the same rows: the generator reads no clock for
data (created_at columns are set from business dates), uses ``random.Random`` streams seeded
from ``seed`` and never iterates over sets. Only the ledger's own ``posted_at`` and the audit
rows record when the seeding ran.
"""

from __future__ import annotations

import hashlib
import random
import re
from calendar import monthrange
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select
from sqlmodel import Session

from finance import audit, demo_data
from finance.authz import Actor
from finance.billing import BillingEngine, BillingPolicy, RunResult, recognition_schedule
from finance.bulk import insert_rows, update_rows
from finance.demo_data import LOCATIONS, STAFF, VENDORS, LocationSpec
from finance.ledger import EntryDraft, Leg, period_of, post_entries
from finance.models import (
    Approval,
    Bill,
    BillingRun,
    Booking,
    BudgetTarget,
    Deposit,
    DeskType,
    Employee,
    Expense,
    Interval,
    Invoice,
    InvoiceLine,
    JournalEntry,
    Location,
    Member,
    Payment,
    PaymentAllocation,
    Plan,
    Resource,
    SlackUser,
    Subscription,
    UsageEvent,
    Vendor,
)
from finance.money import format_cents, round_half_up
from finance.receivables import CLEARING_ACCOUNT
from finance.services import Services
from finance.tax import sync_tax_rates
from finance.util import chunks

MIN_MEMBERS = 20
MIN_MONTHS = 4
ACTOR = "demo"

# probabilities in basis points (1/100 of a percent): the core uses no floats
P_COMPANY = 2_500
P_FOUNDING = 4_000  # members already on board when the books start
P_ANNUAL = 120
P_CHURN = 230  # per member-month
P_CHANGE = 200  # per member-month, at most one change every 4 months
ANNUAL_MEMBERS = (3, 8, 13)  # random members that always take the annual prepaid plan
USAGE_CAP = Decimal("0.20")  # billable usage <= 20 % of the month's plan charge
# invoice_jump stays clean: an upgrade's first invoice (new plan + prorated difference) stays
# under JUMP_GUARD x the old plan, with USAGE_RESERVE of it left for usage; any organic monthly
# invoice whose quote (before its run) is still above JUMP_GUARD x its trailing 3-invoice median
# loses that month's billable usage.
JUMP_GUARD = Decimal("1.9")
USAGE_RESERVE = Decimal("0.05")
USAGE_LINE_KINDS = frozenset({"meeting_room", "printing", "food_beverage", "day_pass"})
CARD_FEE_PPM = 29_000
CARD_FEE_FIXED = 30
CAPEX_THRESHOLD = 250_000
THRESHOLDS = (100_000, 500_000)  # bill approval thresholds (GM, CFO)
BAND = Decimal("0.90")  # "just under" band kept clean: [90 %, 100 %] of a threshold
NEAR = Decimal("0.006")  # clean data keeps same-vendor charges >= 0.6 % apart within 90 days
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class PlantedProblem:
    """One deliberately planted problem: an anomaly kind of DESIGN §5 and its records."""

    kind: str
    description: str
    records: dict[str, list[int]]


@dataclass(frozen=True)
class DemoSummary:
    """What ``seed_demo`` created."""

    members: int
    active_members: int
    locations: int
    invoices: int
    payments: int
    expenses: int
    bills: int
    usage_events: int
    bookings: int
    journal_entries: int
    first_month: str
    last_month: str
    mrr_cents: int
    planted: tuple[PlantedProblem, ...]


def seed_demo(
    services: Services,
    *,
    members: int = 400,
    months: int = 24,
    through: str | None = None,
    seed: int = 7,
) -> DemoSummary:
    """Seed the demo space into an empty database, all in one transaction.

    ``through`` is the last full month (``YYYY-MM``); by default the month before the services'
    clock (UTC). Raises ``ValueError`` on bad arguments or when the database already holds
    members (nothing is written then).
    """
    for name, value, low in (("members", members, MIN_MEMBERS), ("months", months, MIN_MONTHS)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    last = _parse_month(through) if through is not None else _previous_month(services.clock())
    with services.session() as session:
        existing = int(session.execute(select(func.count()).select_from(Member)).scalar_one())
        if existing:
            raise ValueError(
                f"the database already holds {existing} members; the demo only seeds an empty "
                "space (use a fresh database, or `deskbooks demo --reset` for SQLite)"
            )
        codes = [spec.code for spec in LOCATIONS]
        table = Location.__table__  # type: ignore[attr-defined]
        taken = list(session.execute(select(table.c.code).where(table.c.code.in_(codes))).scalars())
        if taken:
            raise ValueError(f"locations {', '.join(sorted(taken))} already exist; the demo "
                             "only seeds an empty space")
        return _Builder(services, session, members=members, months=months, last=last,
                        seed=seed).build()


def _parse_month(text: str) -> date:
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d{2}", text.strip()):
        raise ValueError(f"through must look like YYYY-MM, got {text!r}")
    year, month = (int(p) for p in text.strip().split("-"))
    if not 1 <= month <= 12 or year < 1971:
        raise ValueError(f"through must be a real month YYYY-MM, got {text!r}")
    return date(year, month, 1)


def _previous_month(now: datetime) -> date:
    today = now.astimezone(UTC).date()
    return _add_months(date(today.year, today.month, 1), -1)


# --------------------------------------------------------------------------- small helpers


def _add_months(first: date, n: int) -> date:
    index = first.year * 12 + first.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def _month_end(day: date) -> date:
    return date(day.year, day.month, monthrange(day.year, day.month)[1])


def _label(day: date) -> str:
    return f"{MONTH_ABBR[day.month - 1]} {day.year}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def _normalized(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9& ]+", " ", text.lower()).split())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Bulk writes go through Core (the model's Table), never the ORM bulk path: the ORM splits a
# batch wherever a nullable value switches between None and not-None and splices RETURNING
# rows run by run. Rows whose ids are needed go through finance.bulk.insert_rows.


def _insert(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    for chunk in chunks(rows, 5000):
        session.execute(insert(model.__table__), list(chunk))


def _update(session: Session, model: Any, column: str, pairs: list[tuple[int, int]]) -> None:
    """Bulk UPDATE of one column by primary key: ``pairs`` of (row id, value)."""
    update_rows(session, model, [{"b_id": row_id, column: value} for row_id, value in pairs])


# --------------------------------------------------------------------------- in-memory model


@dataclass
class _Loc:
    idx: int
    spec: LocationSpec
    tz: ZoneInfo
    id: int = 0


@dataclass
class _Plan:
    code: str
    name: str
    desk_type: str
    loc: int | None
    price: int
    interval: str = Interval.MONTH
    deposit: int = 0  # charged once with a new subscription's first invoice
    id: int = 0

    @property
    def annual(self) -> bool:
        return self.interval == Interval.YEAR


@dataclass
class _Sub:
    n: int
    member: int
    plan: _Plan
    loc: int
    quantity: int
    start: date
    end: date | None = None
    replaces: int | None = None
    resource: int | None = None
    id: int = 0

    @property
    def amount(self) -> int:
        return self.plan.price * self.quantity

    def in_service(self, day: date) -> bool:
        return self.start <= day and (self.end is None or self.end >= day)

    def overlaps(self, start: date, end: date) -> bool:
        return self.start <= end and (self.end is None or self.end >= start)


@dataclass
class _Member:
    n: int
    code: str
    kind: str
    name: str
    email: str
    phone: str
    tax_id: str | None
    loc: int
    joined_on: date
    method: str
    payer: str  # prompt / slow / late
    annual: bool = False
    subs: list[int] = field(default_factory=list)
    deposit: int | None = None
    left_on: date | None = None
    id: int = 0


@dataclass
class _Deposit:
    member: int
    loc: int
    amount: int
    received_on: date
    refund_on: date | None = None
    sub: int | None = None  # held from before the books (inserted by the demo)
    entry: int | None = None  # the invoice entry that charged it (the engine's deposits)
    id: int = 0


@dataclass
class _Invoice:
    """An invoice the billing engine issued, as read back for payments and the summary."""

    id: int
    number: str
    member: int
    loc: int
    issue: date
    period: str
    tax: int
    total: int
    entry: int | None
    paid: int = 0


@dataclass
class _Draft:
    """A journal draft with where its id goes once posted."""

    on: date
    rank: int
    draft: EntryDraft
    targets: list[tuple[str, int, str]] = field(default_factory=list)  # (table, index, column)


@dataclass
class _Bill:
    vendor: str
    loc: int
    number: str
    bill_date: date
    amount: int
    account: str
    memo: str
    method: str
    status: str = "approved"
    approvals: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    paid_on: date | None = None
    due: date | None = None
    created_by: str = "U0MANAGER1"
    id: int = 0

    @property
    def steps(self) -> list[str]:
        return _required_steps(self.amount)


@dataclass
class _Expense:
    vendor: str
    loc: int
    on: date
    amount: int
    account: str
    description: str
    source: str = "csv"
    image: str | None = None
    submitted_by: str | None = None
    confidence: int = 96
    reason: str = ""
    id: int = 0


def _required_steps(amount: int) -> list[str]:
    if amount > THRESHOLDS[1]:
        return ["gm", "cfo"]
    if amount > THRESHOLDS[0]:
        return ["gm"]
    return []


def _chance(rng: random.Random, basis_points: int) -> bool:
    """True with a probability of ``basis_points`` / 10,000."""
    return rng.randrange(10_000) < basis_points


def _in_band(amount: int) -> bool:
    return any(t * BAND <= amount <= t for t in THRESHOLDS)


# --------------------------------------------------------------------------- the builder


class _Builder:
    def __init__(self, services: Services, session: Session, *, members: int, months: int,
                 last: date, seed: int) -> None:
        self.services = services
        self.session = session
        self.chart = services.chart
        self.settings = services.settings
        self.n_members = members
        self.months = months
        self.first = _add_months(last, -(months - 1))
        self.last = last
        self.range_start = self.first
        self.range_end = _month_end(last)
        self.month_starts = [_add_months(self.first, k) for k in range(months)]
        self.scale = max(Decimal(members) / 400, Decimal("0.25"))
        self.root = self.scale.sqrt()  # purchases grow with the square root of the space
        self.rng_members = random.Random(f"deskbooks-demo:{seed}:members")
        self.rng_usage = random.Random(f"deskbooks-demo:{seed}:usage")
        self.rng_pay = random.Random(f"deskbooks-demo:{seed}:payments")
        self.rng_books = random.Random(f"deskbooks-demo:{seed}:books")
        self.rng_space = random.Random(f"deskbooks-demo:{seed}:space")

        self.locs = [_Loc(i, spec, ZoneInfo(spec.timezone)) for i, spec in enumerate(LOCATIONS)]
        self.plans: dict[tuple[int | None, str], _Plan] = {}
        self.members: list[_Member] = []
        self.subs: list[_Sub] = []
        self.deposits: list[_Deposit] = []
        self.resources: list[dict[str, Any]] = []
        self.rooms: dict[int, list[int]] = {}  # location -> resource indexes of meeting rooms
        self.bookings: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.invoices: list[_Invoice] = []
        self.payments: list[dict[str, Any]] = []
        self.allocations: list[tuple[int, int]] = []  # (payment index, invoice index)
        self.bills: list[_Bill] = []
        self.expenses: list[_Expense] = []
        self.vendor_ids: dict[str, int] = {}
        self.vendor_history: dict[str, list[tuple[date, int]]] = defaultdict(list)
        self.employee_ids: dict[str, int] = {}
        self.drafts: list[_Draft] = []
        self.used_names: set[str] = set()
        self.company_words = [w for w in demo_data.COMPANY_WORDS
                              if w not in demo_data.RESERVED_COMPANY_WORDS]
        self.used_domains: set[str] = set()
        self.used_tax_ids: set[str] = set()
        self.receipt_keys: set[tuple[str, date, int]] = set()
        self.named: dict[str, _Member] = {}
        self.planted_refs: dict[str, Any] = {}
        self.booked: dict[tuple[int, date], int] = {}  # (room resource index, day) -> slot mask

    # ------------------------------------------------------------------ orchestration

    def build(self) -> DemoSummary:
        self._space()
        self._scripted_members()
        self._random_members()
        self._assign_resources()
        self._insert_space_and_members()
        self._planted_bookings()
        self._generate_usage()
        self._bill_months()
        self._settle_deposits()
        self._simulate_payments()
        self._record_receivables()
        self._people_and_vendors()
        self._generate_books()
        self._insert_books()
        self._journal()
        self._budgets()
        audit.record(
            self.session, actor=ACTOR, action="demo.seed", entity_type="space",
            details={"members": self.n_members, "months": self.months,
                     "through": period_of(self.last)},
        )
        self.session.flush()
        return self._summary()

    def _k(self, day: date) -> int:
        """Month index of ``day`` (0 = the first month of the books; negative before)."""
        return (day.year - self.first.year) * 12 + day.month - self.first.month

    def _at(self, day: date, hour: int, minute: int, loc: int) -> datetime:
        """A wall-clock time at a location, as an aware UTC datetime."""
        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.locs[loc].tz)
        return local.astimezone(UTC)

    def _scaled(self, cents: int, factor: Decimal | None = None) -> int:
        """Scale a base amount with the size of the space, to whole dollars."""
        return round_half_up(Decimal(cents) * (factor or self.scale) / 100) * 100

    # ------------------------------------------------------------------ space

    def _space(self) -> None:
        for loc in self.locs:
            s = loc.spec
            for desk_type, label, price, deposit in (
                (DeskType.HOT_DESK, "Hot Desk", s.hot_cents, 0),
                (DeskType.DEDICATED_DESK, "Dedicated Desk", s.dedicated_cents, 0),
                (DeskType.PRIVATE_OFFICE, "Private Office", s.office_seat_cents,
                 s.office_deposit_cents),
            ):
                code = f"{s.code}-{desk_type.value.upper().replace('_', '-')}"
                self.plans[(loc.idx, desk_type.value)] = _Plan(
                    code, f"{label} ({s.name})", desk_type.value, loc.idx, price,
                    deposit=deposit)
            annual = s.dedicated_cents * 12 * (100 - demo_data.ANNUAL_DISCOUNT_PERCENT) // 100
            self.plans[(loc.idx, "annual")] = _Plan(
                f"{s.code}-DEDICATED-DESK-ANNUAL", f"Dedicated Desk — Annual ({s.name})",
                DeskType.DEDICATED_DESK.value, loc.idx, annual, interval=Interval.YEAR)
        self.plans[(None, DeskType.VIRTUAL_OFFICE.value)] = _Plan(
            "VIRTUAL-OFFICE", "Virtual Office", DeskType.VIRTUAL_OFFICE.value, None,
            demo_data.VIRTUAL_OFFICE_CENTS)

    def _plan(self, loc: int, desk_type: str) -> _Plan:
        if desk_type == DeskType.VIRTUAL_OFFICE:
            return self.plans[(None, desk_type)]
        return self.plans[(loc, desk_type)]

    # ------------------------------------------------------------------ members

    def _add_member(self, *, kind: str, name: str, email: str, tax_id: str | None, loc: int,
                    joined: date, method: str, payer: str, annual: bool = False,
                    phone: str | None = None) -> _Member:
        n = len(self.members)
        spec = self.locs[loc].spec
        exchange = 555 + n // 10_000
        m = _Member(
            n=n, code=f"M-{n + 1:06d}", kind=kind, name=name, email=email,
            phone=phone or f"({spec.area_code}) {exchange}-{n % 10_000:04d}", tax_id=tax_id,
            loc=loc, joined_on=joined, method=method, payer=payer, annual=annual,
        )
        self.members.append(m)
        self.used_names.add(_normalized(name))
        if tax_id:
            self.used_tax_ids.add(tax_id)
        return m

    def _new_sub(self, m: _Member, plan: _Plan, quantity: int, start: date,
                 replaces: int | None = None) -> _Sub:
        sub = _Sub(len(self.subs), m.n, plan, m.loc, quantity, start, replaces=replaces)
        self.subs.append(sub)
        m.subs.append(sub.n)
        return sub

    def _start(self, m: _Member, plan: _Plan, quantity: int) -> _Sub:
        return self._new_sub(m, plan, quantity, m.joined_on)

    def _change(self, m: _Member, sub: _Sub, on: date, desk_type: str, quantity: int) -> _Sub:
        """Move ``m`` from ``sub`` to another plan/quantity, the way finance.subscriptions does:
        an upgrade ends the old subscription the day before ``on`` and starts the new one on
        ``on`` (the next billing run prorates both sides); a downgrade waits for the next
        period start unless the space prorates downgrades immediately."""
        plan = self._plan(m.loc, desk_type)
        if plan.price * quantity > sub.amount or self.settings.downgrade_timing == "immediate":
            sub.end = on - timedelta(days=1)
            new = self._new_sub(m, plan, quantity, on, replaces=sub.n)
        else:
            sub.end = _month_end(on)
            new = self._new_sub(m, plan, quantity, sub.end + timedelta(days=1), replaces=sub.n)
        return new

    def _change_month(self, k: int) -> int:
        """A month index for a planted change: at least the second month, at most the
        second-to-last (so its invoices fall inside the books)."""
        return min(max(k, 1), self.months - 2)

    def _before(self, days: int) -> date:
        return self.range_start - timedelta(days=days)

    def _months_back(self, back: int) -> date:
        """The first day of the month ``back`` months before the end (clamped to the start)."""
        return self.month_starts[max(self.months - back, 0)]

    def _scripted_members(self) -> None:
        """The named members of DESIGN §10 and the members behind planted problems."""
        months, ms = self.months, self.month_starts
        dt, rs, ut = 0, 1, 2

        acme = self._add_member(kind="company", name="Acme Design",
                                email="billing@acmedesign.com", tax_id="84-3920117", loc=dt,
                                joined=self._before(310), method="ach", payer="prompt")
        sub = self._start(acme, self._plan(dt, "dedicated_desk"), 4)
        k = self._change_month(months - 5)
        self._change(acme, sub, ms[k].replace(day=14), "private_office", 4)

        dup_k = max(months - 8, 0)
        dup = self._add_member(kind="company", name="ACME Design LLC",
                               email="accounts@acmedesign.com", tax_id="84-3920117", loc=dt,
                               joined=ms[dup_k], method="card", payer="prompt",
                               phone=acme.phone)
        self._start(dup, self._plan(dt, "virtual_office"), 1)

        bluebird = self._add_member(kind="company", name="Bluebird Labs",
                                    email="finance@bluebirdlabs.io", tax_id="84-5512093",
                                    loc=rs, joined=self._before(200), method="card", payer="prompt")
        sub = self._start(bluebird, self._plan(rs, "hot_desk"), 3)
        on = ms[self._change_month(months - 7)].replace(day=9)
        self._change(bluebird, sub, on, "dedicated_desk", 3)

        northwind = self._add_member(kind="company", name="Northwind Studio",
                                     email="ap@northwindstudio.com", tax_id="84-7734120",
                                     loc=ut, joined=self._before(150), method="ach", payer="slow")
        sub = self._start(northwind, self._plan(ut, "dedicated_desk"), 2)
        on = ms[self._change_month(months - 3)].replace(day=18)
        self._change(northwind, sub, on, "dedicated_desk", 3)

        priya = self._add_member(kind="person", name="Priya Shah", email="priya@priyashah.design",
                                 tax_id=None, loc=dt, joined=self._before(95), method="card",
                                 payer="prompt")
        sub = self._start(priya, self._plan(dt, "dedicated_desk"), 1)
        # Upgrade on the 11th of a 31-day month (the DESIGN §4 worked example: $600 -> $900,
        # credit -$406.45, charge $609.68), preferably a March.
        candidates = [k for k in range(1, months - 1) if monthrange(ms[k].year, ms[k].month)[1]
                      == 31]
        march = [k for k in candidates if ms[k].month == 3]
        k = (march or candidates or [months - 2])[-1]
        self._change(priya, sub, ms[k].replace(day=11), "private_office", 1)

        harbor = self._add_member(kind="company", name="Harbor & Pine Architects",
                                  email="office@harborpine.com", tax_id="84-2209381", loc=dt,
                                  joined=self._before(420), method="ach", payer="prompt")
        sub = self._start(harbor, self._plan(dt, "private_office"), 3)
        sub.end = _month_end(ms[max(months - 4, 0)])
        harbor.left_on = sub.end

        kestrel = self._add_member(kind="company", name="Kestrel Analytics",
                                   email="accounts@kestrelanalytics.com", tax_id="84-6630457",
                                   loc=ut, joined=ms[months - 3], method="ach", payer="prompt",
                                   annual=True)
        self._start(kestrel, self._plan(ut, "annual"), 1)

        marcus = self._add_member(kind="person", name="Marcus Webb", email="marcus.webb@gmail.com",
                                  tax_id=None, loc=rs, joined=self._before(240), method="card",
                                  payer="prompt")
        self._start(marcus, self._plan(rs, "hot_desk"), 1)

        self.named = {"acme": acme, "acme_dup": dup, "bluebird": bluebird,
                      "northwind": northwind, "priya": priya, "harbor": harbor,
                      "kestrel": kestrel, "marcus": marcus}
        for person in demo_data.RESERVED_PERSON_NAMES:
            self.used_names.add(_normalized(person))

    def _random_members(self) -> None:
        rng = self.rng_members
        weights = [loc.spec.weight for loc in self.locs]
        for j in range(self.n_members - len(self.members)):
            company = _chance(rng, P_COMPANY)
            loc = rng.choices(range(len(self.locs)), weights)[0]
            name, email, tax_id = self._company(rng) if company else self._person(rng)
            founding = _chance(rng, P_FOUNDING)
            annual = not founding and _chance(rng, P_ANNUAL)
            if j in ANNUAL_MEMBERS:  # a few annual prepaid members in every space
                founding, annual = False, True
            if founding:
                joined = self.range_start - timedelta(days=rng.randint(20, 540))
            else:
                first = self.month_starts[rng.randrange(self.months)]
                day = 1 if annual or _chance(rng, 4_000) else rng.randint(2, 28)
                joined = first.replace(day=day)
            if company:
                method = rng.choices(("ach", "card", "check"), (50, 30, 20))[0]
            else:
                method = rng.choices(("card", "ach", "check", "cash"), (65, 15, 10, 10))[0]
            payer = rng.choices(("prompt", "slow", "late"), (78, 15, 7))[0]
            m = self._add_member(kind="company" if company else "person", name=name,
                                 email=email, tax_id=tax_id, loc=loc, joined=joined,
                                 method=method, payer=payer, annual=annual)
            if annual:
                self._start(m, self._plan(loc, "annual"), 1)
                continue
            desk_type, quantity = self._first_product(rng, company)
            self._live(m, self._start(m, self._plan(loc, desk_type), quantity), rng)

    def _person(self, rng: random.Random) -> tuple[str, str, str | None]:
        for attempt in range(200):
            first, last = rng.choice(demo_data.FIRST_NAMES), rng.choice(demo_data.LAST_NAMES)
            if attempt >= 100:  # a double-barrelled surname once the simple pairs run thin
                last = f"{last}-{rng.choice(demo_data.LAST_NAMES)}"
            name = f"{first} {last}"
            if _normalized(name) not in self.used_names:
                break
        else:  # pragma: no cover - 10**7 combinations
            raise ValueError("ran out of demo person names")
        domain = rng.choice(demo_data.FREEMAIL_DOMAINS)
        return name, f"{_slug(first)}.{_slug(name.split(' ', 1)[1])}@{domain}", None

    def _company(self, rng: random.Random) -> tuple[str, str, str | None]:
        for attempt in range(400):
            word = rng.choice(self.company_words)
            kind = rng.choice(demo_data.COMPANY_KINDS)
            name = f"{word} {kind}"
            if attempt >= 200:
                name = f"{word} {rng.choice(self.company_words)} {kind}"
            domain = f"{_slug(name)}.{rng.choice(('com', 'io', 'co'))}"
            if _normalized(name) not in self.used_names and _slug(name) not in self.used_domains:
                break
        else:  # pragma: no cover
            raise ValueError("ran out of demo company names")
        self.used_domains.add(_slug(name))
        while True:
            tax_id = f"{rng.randint(82, 89)}-{rng.randint(1_000_000, 9_999_999)}"
            if tax_id not in self.used_tax_ids:
                break
        return name, f"{rng.choice(('billing', 'accounts', 'finance', 'ap'))}@{domain}", tax_id

    @staticmethod
    def _first_product(rng: random.Random, company: bool) -> tuple[str, int]:
        r = rng.randrange(100)  # percent
        if company:
            if r < 25:
                return "hot_desk", rng.randint(2, 5)
            if r < 60:
                return "dedicated_desk", rng.randint(2, 6)
            return "private_office", rng.randint(2, 8)
        if r < 45:
            return "hot_desk", 1
        if r < 75:
            return "dedicated_desk", 1
        if r < 83:
            return "private_office", rng.choice((1, 1, 2))
        return "virtual_office", 1

    def _live(self, m: _Member, sub: _Sub, rng: random.Random) -> None:
        """A member's months: an occasional plan change, and churn at a month end."""
        joined_k = self._k(m.joined_on)
        last_change = joined_k
        for k in range(max(joined_k, 0), self.months):
            changed = False
            if k - last_change >= 4 and _chance(rng, P_CHANGE):
                new = self._random_change(m, sub, k, rng)
                if new is not None:
                    sub, last_change, changed = new, k, True
            if not changed and k - joined_k >= 2 and _chance(rng, P_CHURN):
                sub.end = _month_end(self.month_starts[k])
                m.left_on = sub.end
                return

    def _random_change(self, m: _Member, sub: _Sub, k: int, rng: random.Random) -> _Sub | None:
        dt, q = sub.plan.desk_type, sub.quantity
        company = m.kind == "company"
        options: list[tuple[str, int]] = []
        if dt == "hot_desk":
            options.append(("dedicated_desk", q))
        if dt == "dedicated_desk":
            options += [("private_office", q), ("hot_desk", q)]
        if dt == "private_office":
            options.append(("dedicated_desk", q))
        if company and dt != "virtual_office":
            if 2 <= q < 8:
                options.append((dt, q + 1))
            if q >= 3:
                options.append((dt, q - 1))
        if not options:
            return None
        desk_type, quantity = rng.choice(options)
        first = self.month_starts[k]
        new_amount = self._plan(m.loc, desk_type).price * quantity
        if new_amount > sub.amount:
            day = self._upgrade_day(sub.amount, new_amount, first, rng)
            if day is None:
                return None
        else:
            day = rng.randint(2, 28)
            if self.settings.downgrade_timing != "immediate" and k == self.months - 1:
                return None  # would start after the books end
        return self._change(m, sub, first.replace(day=day), desk_type, quantity)

    @staticmethod
    def _upgrade_day(old: int, new: int, first: date, rng: random.Random) -> int | None:
        """A change day late enough that the next invoice (new plan in advance plus the
        prorated difference for the rest of this month) stays under JUMP_GUARD x the old plan."""
        days = monthrange(first.year, first.month)[1]
        room = (JUMP_GUARD - USAGE_RESERVE) * old - new
        if room <= 0:
            return None
        left = room / (new - old) * days  # days of this month the difference may cover
        earliest = int((days + 1 - left).to_integral_value(rounding=ROUND_CEILING))
        if max(earliest, 2) > 28:
            return None
        return rng.randint(max(earliest, 2), 28)

    def _settle_deposits(self) -> None:
        """Refund deposits two weeks after a member leaves (when that falls in the books)."""
        for m in self.members:
            if m.deposit is not None and m.left_on is not None:
                refund_on = m.left_on + timedelta(days=14)
                if refund_on <= self.range_end:
                    self.deposits[m.deposit].refund_on = refund_on

    # ------------------------------------------------------------------ inventory

    def _assign_resources(self) -> None:
        """Desks and offices sized to demand (plus vacancies), assigned without overlaps."""
        rng = self.rng_space
        for loc in self.locs:
            subs = sorted((s for s in self.subs if s.loc == loc.idx), key=lambda s: (s.start, s.n))
            # hot desks: one shared area sized to the peak number of hot-desk seats
            peak = self._peak([s for s in subs if s.plan.desk_type == "hot_desk"])
            hot = self._resource(loc.idx, "desk", "hot_desk", "Hot Desk Area",
                                 capacity=max(10, peak * 115 // 100 + 2))
            for s in subs:
                if s.plan.desk_type == "hot_desk":
                    s.resource = hot
            # dedicated desks: one resource per desk
            free: list[date] = []  # per desk: first day it is free again
            desks: list[int] = []
            for s in subs:
                if s.plan.desk_type != "dedicated_desk":
                    continue
                picked = [i for i, day in enumerate(free) if day <= s.start][: s.quantity]
                while len(picked) < s.quantity:
                    free.append(s.start)
                    desks.append(self._resource(loc.idx, "desk", "dedicated_desk",
                                                f"Dedicated Desk {len(desks) + 1:03d}"))
                    picked.append(len(free) - 1)
                for i in picked:
                    free[i] = (s.end + timedelta(days=1)) if s.end else date.max
                s.resource = desks[picked[0]]
            for _ in range(max(2, len(desks) * 15 // 100)):
                desks.append(self._resource(loc.idx, "desk", "dedicated_desk",
                                            f"Dedicated Desk {len(desks) + 1:03d}"))
            # private offices: one resource per office, sized by seats
            offices: dict[int, list[tuple[int, date]]] = defaultdict(list)  # seats -> (res, free)
            number = 100
            for s in subs:
                if s.plan.desk_type != "private_office":
                    continue
                pool = offices[s.quantity]
                slot = next((i for i, (_, day) in enumerate(pool) if day <= s.start), None)
                if slot is None:
                    number += 1
                    res = self._resource(loc.idx, "office", "private_office",
                                         f"Office {number} ({s.quantity} seats)", s.quantity)
                    pool.append((res, s.start))
                    slot = len(pool) - 1
                res = pool[slot][0]
                pool[slot] = (res, (s.end + timedelta(days=1)) if s.end else date.max)
                s.resource = res
            for _ in range(max(2, (number - 100) * 12 // 100)):
                number += 1
                seats = rng.randint(1, 8)
                self._resource(loc.idx, "office", "private_office",
                               f"Office {number} ({seats} seats)", seats)
            # meeting rooms: the location's rooms, repeated for large spaces
            sets = max(1, -(-self.n_members // 500))
            self.rooms[loc.idx] = []
            for copy in range(sets):
                for name, capacity, rate in loc.spec.meeting_rooms:
                    label = name if copy == 0 else f"{name} {copy + 1}"
                    self.rooms[loc.idx].append(self._resource(
                        loc.idx, "meeting_room", None, label, capacity, rate))

    def _peak(self, subs: Sequence[_Sub]) -> int:
        deltas: dict[date, int] = defaultdict(int)
        for s in subs:
            start = max(s.start, self.range_start)
            end = min(s.end or self.range_end, self.range_end)
            if start > end:
                continue
            deltas[start] += s.quantity
            deltas[end + timedelta(days=1)] -= s.quantity
        peak = running = 0
        for day in sorted(deltas):
            running += deltas[day]
            peak = max(peak, running)
        return peak

    def _resource(self, loc: int, kind: str, desk_type: str | None, name: str,
                  capacity: int = 1, rate: int = 0) -> int:
        self.resources.append({
            "location_id": loc, "kind": kind, "desk_type": desk_type, "name": name,
            "capacity": capacity, "hourly_rate_cents": rate, "active": True,
        })
        return len(self.resources) - 1

    # ------------------------------------------------------------------ inserts (space)

    def _insert_space_and_members(self) -> None:
        s = self.session
        created = self._at(self.range_start - timedelta(days=600), 9, 0, 0)
        ids = insert_rows(s, Location, [
            {"code": loc.spec.code, "name": loc.spec.name, "timezone": loc.spec.timezone,
             "currency": "USD", "address": loc.spec.address, "created_at": created}
            for loc in self.locs
        ])
        for loc, id_ in zip(self.locs, ids, strict=True):
            loc.id = id_
        for row in self.resources:
            row["location_id"] = self.locs[row["location_id"]].id
        resource_ids = insert_rows(s, Resource, self.resources)
        plans = list(self.plans.values())
        plan_ids = insert_rows(s, Plan, [
            {"code": p.code, "name": p.name, "desk_type": p.desk_type,
             "location_id": None if p.loc is None else self.locs[p.loc].id,
             "price_cents": p.price, "interval": p.interval, "currency": "USD",
             "deposit_cents": p.deposit, "included_meeting_minutes": 0, "active": True}
            for p in plans
        ])
        for p, id_ in zip(plans, plan_ids, strict=True):
            p.id = id_
        # the demo space's sales tax table lives in knowledge/ (the billing engine's source too)
        sync_tax_rates(s, self.settings.knowledge_path, actor=ACTOR)
        member_ids = insert_rows(s, Member, [
            {"code": m.code, "kind": m.kind, "name": m.name, "email": m.email, "phone": m.phone,
             "tax_id": m.tax_id, "company_id": None, "home_location_id": self.locs[m.loc].id,
             "external_ref": None, "joined_on": m.joined_on,
             "created_at": self._at(m.joined_on, 10, 0, m.loc)}
            for m in self.members
        ])
        for m, id_ in zip(self.members, member_ids, strict=True):
            m.id = id_
        # subscriptions in generations, so that replaces_id can point at an inserted row
        depth: list[int] = []
        for sub in self.subs:
            depth.append(0 if sub.replaces is None else depth[sub.replaces] + 1)
        for level in range(max(depth, default=0) + 1):
            batch = [sub for sub, d in zip(self.subs, depth, strict=True) if d == level]
            ids = insert_rows(s, Subscription, [
                {"member_id": self.members[sub.member].id, "plan_id": sub.plan.id,
                 "location_id": self.locs[sub.loc].id,
                 "resource_id": None if sub.resource is None else resource_ids[sub.resource],
                 "quantity": sub.quantity, "unit_price_cents": sub.plan.price,
                 "start_date": sub.start, "end_date": sub.end, "billing_anchor_day": 1,
                 "replaces_id": None if sub.replaces is None else self.subs[sub.replaces].id,
                 "created_at": self._at(sub.start - timedelta(days=1), 15, 0, sub.loc)}
                for sub in batch
            ])
            for sub, id_ in zip(batch, ids, strict=True):
                sub.id = id_
        self.resource_ids = resource_ids

    # ------------------------------------------------------------------ usage

    def _book(self, m: _Member, room: int, day: date, slot: int, slots: int,
              status: str = "confirmed") -> int | None:
        """Reserve a meeting room in half-hour slots from 08:00; None when taken."""
        mask = ((1 << slots) - 1) << slot
        key = (room, day)
        if self.booked.get(key, 0) & mask:
            return None
        if status == "confirmed":
            self.booked[key] = self.booked.get(key, 0) | mask
        rate = self.resources[room]["hourly_rate_cents"]
        start = self._at(day, 8 + slot // 2, 30 * (slot % 2), m.loc)
        self.bookings.append({
            "member_id": m.id, "resource_id": self.resource_ids[room],
            "location_id": self.locs[m.loc].id, "start_at": start,
            "end_at": start + timedelta(minutes=30 * slots),
            "amount_cents": rate * slots // 2, "status": status, "invoice_line_id": None,
            "_room": room,
        })
        return len(self.bookings) - 1

    def _planted_bookings(self) -> None:
        """invoice_jump: Marcus Webb books the board room for ~30 hours in one month."""
        marcus = self.named["marcus"]
        k = self.months - 2
        first = self.month_starts[k]
        room = self.rooms[marcus.loc][0]
        picked = 0
        day = first
        while picked < 10 and day.month == first.month:
            if day.weekday() < 5 and self._book(marcus, room, day, 2, 6) is not None:
                picked += 1
            day += timedelta(days=1)
        self.planted_refs["jump"] = (marcus.n, k + 1)

    def _generate_usage(self) -> None:
        rng = self.rng_usage
        marcus = self.named["marcus"]
        for m in self.members:
            subs = [self.subs[i] for i in m.subs]
            loc = self.locs[m.loc]
            for k in range(max(self._k(m.joined_on), 0), self.months):
                first, last = self.month_starts[k], _month_end(self.month_starts[k])
                active = [s for s in subs if s.overlaps(first, last)]
                if not active:
                    if all(s.end is not None and s.end < first for s in subs):
                        break
                    continue
                a = max(first, min(s.start for s in active))
                b = min(last, max(s.end or last for s in active))
                span = (b - a).days
                virtual = all(s.plan.desk_type == "virtual_office" for s in active)
                tag = f"{m.code}-{first:%Y%m}"

                def when(a: date = a, span: int = span) -> tuple[date, int, int]:
                    return (a + timedelta(days=rng.randint(0, span)), rng.randint(8, 19),
                            rng.randint(0, 59))
                if not virtual:  # the door system reports a monthly count of entries
                    day, hh, mm = b, 23, 59
                    self._event(m, "kisi", f"kisi-{tag}", "door_access",
                                rng.randint(max(1, span // 4), span + 1), 0,
                                self._at(day, hh, mm, m.loc))
                if m.annual or (m.n == marcus.n and k == self.months - 2):
                    continue  # annual members have no billable usage; Marcus's month is planted
                cap = round_half_up(Decimal(min(s.amount for s in active)) * USAGE_CAP)
                spent = 0
                # meeting rooms
                p_book = 5_500 if m.kind == "company" else 1_500 if virtual else 3_000
                if _chance(rng, p_book):
                    for _ in range(2 if m.kind == "company" and _chance(rng, 3_000) else 1):
                        room = rng.choice(self.rooms[m.loc])
                        slots = rng.randint(2, 6)
                        slot = rng.randint(0, 20 - slots)
                        day = a + timedelta(days=rng.randint(0, span))
                        cost = self.resources[room]["hourly_rate_cents"] * slots // 2
                        cancelled = _chance(rng, 500)
                        if not cancelled and spent + cost > cap:
                            continue
                        b_idx = self._book(m, room, day, slot, slots,
                                           "cancelled" if cancelled else "confirmed")
                        if b_idx is not None and not cancelled:
                            spent += cost
                # printing
                if not virtual and _chance(rng, 3_500):
                    pages = rng.randint(4, 60)
                    cost = pages * demo_data.PRINT_PAGE_CENTS
                    day, hh, mm = when()
                    if spent + cost <= cap:
                        spent += cost
                        self._event(
                            m, "papercut", f"pc-{tag}-1", "print", pages,
                            demo_data.PRINT_PAGE_CENTS, self._at(day, hh, mm, m.loc))
                # coffee bar
                for j in range(rng.choices((0, 1, 2), (35, 40, 25))[0]):
                    qty = rng.randint(1, 2)
                    price = rng.choice(demo_data.COFFEE_MENU_CENTS)
                    day, hh, mm = when()
                    if spent + qty * price <= cap:
                        spent += qty * price
                        self._event(
                            m, "square", f"sq-{tag}-{j + 1}", "coffee", qty, price,
                            self._at(day, hh, mm, m.loc))
                # guest day passes
                if _chance(rng, 1_000 if virtual else 600):
                    price = loc.spec.day_pass_cents
                    day, hh, mm = when()
                    if spent + price <= cap:
                        spent += price
                        self._event(
                            m, "nexudus", f"dp-{tag}-1", "day_pass", 1, price,
                            self._at(day, hh, mm, m.loc))

    def _event(self, m: _Member, source: str, external_id: str, kind: str, quantity: int,
               unit: int, at: datetime) -> int:
        self.events.append({
            "source": source, "external_id": external_id, "member_id": m.id,
            "location_id": self.locs[m.loc].id, "kind": kind, "quantity": quantity,
            "unit_price_cents": unit, "occurred_at": at,
            "received_at": at + timedelta(seconds=45), "invoice_line_id": None,
        })
        return len(self.events) - 1

    # ------------------------------------------------------------------ billing (the engine)

    def _bill_months(self) -> None:
        """Bill every demo month through finance.billing's BillingEngine, in order: a run, an
        approval and the issue on the 1st. Deposits held from before the books and all usage
        are inserted first (the engine bills last month's usage in each run)."""
        s = self.session
        for sub in self.subs:  # deposits held before the books start (the engine skips them)
            m = self.members[sub.member]
            if sub.plan.deposit and sub.replaces is None and sub.start < self.range_start \
                    and m.deposit is None:
                m.deposit = len(self.deposits)
                self.deposits.append(_Deposit(m.n, sub.loc, sub.plan.deposit, sub.start,
                                              sub=sub.n))
        dep_ids = insert_rows(s, Deposit, [
            {"member_id": self.members[d.member].id, "subscription_id": self.subs[d.sub].id,
             "location_id": self.locs[d.loc].id, "amount_cents": d.amount,
             "received_on": d.received_on, "refunded_cents": 0, "refunded_on": None,
             "status": "held", "journal_entry_id": None, "refund_journal_entry_id": None}
            for d in self.deposits if d.sub is not None
        ])
        for d, id_ in zip(self.deposits, dep_ids, strict=True):
            d.id = id_
        for model, items in ((Booking, self.bookings), (UsageEvent, self.events)):
            ids = insert_rows(s, model, [{k: v for k, v in row.items() if not k.startswith("_")}
                                         for row in items])
            for row, id_ in zip(items, ids, strict=True):
                row["id"] = id_
        engine = BillingEngine(self.chart, BillingPolicy.from_settings(self.settings))
        actor = Actor.system(ACTOR)
        # held for the runs: the session's identity map keeps only referenced objects, and the
        # engine looks each booking's location up by id
        held = list(s.execute(select(Location)).scalars())
        history: dict[int, list[int]] = defaultdict(list)  # member id -> invoice totals
        self._drops: list[tuple[list[int], list[int]]] = []
        for k, first in enumerate(self.month_starts):
            period = period_of(first)
            while True:  # at most twice: a run with a jump is rolled back and run again
                savepoint = s.begin_nested()
                result = engine.run(s, period, actor=actor, dry_run=False)
                if not self._keep_steady(result, k, history):
                    savepoint.commit()
                    break
                savepoint.rollback()
                self._drop_usage()
            engine.approve(s, result.invoice_ids, actor=actor)
            engine.issue(s, result.invoice_ids, actor=actor, on=first)
            for draft in result.invoices:
                history[draft.member_id].append(draft.total_cents)
        del held
        # usage dropped by _keep_steady never happened
        self.bookings = [b for b in self.bookings if not b.get("_dropped")]
        self.events = [e for e in self.events if not e.get("_dropped")]
        self._load_receivables()

    def _keep_steady(self, result: RunResult, k: int, history: dict[int, list[int]]) -> bool:
        """Keep organic invoices clear of the invoice_jump pattern. A member whose drafted
        invoice exceeds JUMP_GUARD x the median of their three previous ones loses the usage
        it bills: those events and bookings are deleted from the space (they never happened).
        Returns True when usage is to be dropped; the caller then rolls the run back, deletes
        it (_drop_usage, outside the run's savepoint) and runs the month again."""
        jump_member, jump_k = self.planted_refs["jump"]
        jump_id = self.members[jump_member].id
        events: list[int] = []
        bookings: list[int] = []
        for draft in result.invoices:
            past = history[draft.member_id][-3:]
            if len(past) < 3 or (draft.member_id, k) == (jump_id, jump_k):
                continue
            if draft.total_cents <= JUMP_GUARD * sorted(past)[1]:
                continue
            for line in draft.lines:
                if line.kind in USAGE_LINE_KINDS:
                    events += line.usage_event_ids
                    bookings += line.booking_ids
        if not events and not bookings:
            return False
        self._drops.append((events, bookings))
        return True

    def _drop_usage(self) -> None:
        for events, bookings in self._drops:
            for model, rows, ids in ((UsageEvent, self.events, events),
                                     (Booking, self.bookings, bookings)):
                if not ids:
                    continue
                table = model.__table__  # type: ignore[union-attr]
                for chunk in chunks(sorted(ids), 2000):
                    self.session.execute(delete(table).where(table.c.id.in_(chunk)))
                gone = set(ids)
                for row in rows:
                    if row["id"] in gone:
                        row["_dropped"] = True
        self._drops.clear()

    def _load_receivables(self) -> None:
        """Read back what the engine issued: invoices, the deposits it charged, the planted
        invoices' details."""
        s = self.session
        loc_of = {loc.id: loc.idx for loc in self.locs}
        member_of = {m.id: m for m in self.members}
        inv_t = Invoice.__table__.c  # type: ignore[attr-defined]
        dep_t = Deposit.__table__.c  # type: ignore[attr-defined]
        line_t = InvoiceLine.__table__.c  # type: ignore[attr-defined]
        for row in s.execute(
            select(inv_t.id, inv_t.number, inv_t.member_id, inv_t.location_id, inv_t.period,
                   inv_t.issue_date, inv_t.tax_cents, inv_t.total_cents, inv_t.journal_entry_id)
            .order_by(inv_t.issue_date, inv_t.member_id, inv_t.id)
        ):
            self.invoices.append(_Invoice(
                id=row.id, number=row.number, member=member_of[row.member_id].n,
                loc=loc_of[row.location_id], issue=row.issue_date, period=row.period,
                tax=row.tax_cents, total=row.total_cents, entry=row.journal_entry_id))
        entry_of = {(inv.member, inv.issue): inv.entry for inv in self.invoices}
        for row in s.execute(
            select(dep_t.id, dep_t.member_id, dep_t.location_id, dep_t.amount_cents,
                   dep_t.received_on)
            .where(dep_t.received_on >= self.range_start).order_by(dep_t.id)
        ):
            m = member_of[row.member_id]
            m.deposit = len(self.deposits)
            self.deposits.append(_Deposit(m.n, loc_of[row.location_id], row.amount_cents,
                                          row.received_on, id=row.id,
                                          entry=entry_of[(m.n, row.received_on)]))
        jump_member, jump_k = self.planted_refs["jump"]
        jump_period = period_of(self.month_starts[jump_k])
        jump = next(inv for inv in self.invoices
                    if inv.member == jump_member and inv.period == jump_period)
        hours = s.execute(select(func.sum(line_t.quantity)).where(
            line_t.invoice_id == jump.id, line_t.kind == "meeting_room")).scalar_one()
        self.planted_refs["jump_invoice"] = (jump, Decimal(hours or 0))
        self.deferred_lines = list(s.execute(
            select(line_t.id, line_t.invoice_id, line_t.kind, line_t.amount_cents,
                   line_t.account_code, line_t.location_id, line_t.service_start,
                   line_t.service_end)
            .where(line_t.deferred_cents > 0).order_by(line_t.id)
        ))

    # ------------------------------------------------------------------ payments

    def _simulate_payments(self) -> None:
        rng = self.rng_pay
        for i, inv in enumerate(self.invoices):
            m = self.members[inv.member]
            never = False
            if m.payer == "prompt":
                delay = rng.randint(0, 6)
            elif m.payer == "slow":
                delay = rng.randint(5, 25)
            else:  # late payers: old invoices get paid eventually, recent ones may not
                delay = rng.randint(20, 75)
                never = _chance(rng, 3_500) and inv.issue > self.range_end - timedelta(days=150)
            received = inv.issue + timedelta(days=delay)
            if never or received > self.range_end or inv.total <= 0:  # still open
                continue
            method = m.method
            fee = (round_half_up(Decimal(inv.total) * CARD_FEE_PPM / 1_000_000) + CARD_FEE_FIXED
                   if method == "card" else 0)
            n = len(self.payments) + 1
            reference = {
                "card": f"ch_demo{n:08d}", "ach": f"ACH {m.code} {received:%Y%m%d}",
                "check": f"Check #{1000 + n % 9000}", "cash": "Cash at the front desk",
            }[method]
            self.payments.append({
                "external_id": f"demo-{method}-{n:07d}", "member_id": m.id,
                "location_id": self.locs[inv.loc].id, "method": method,
                "amount_cents": inv.total, "fee_cents": fee, "received_on": received,
                "reference": reference, "journal_entry_id": None,
                "created_at": self._at(received, 14, 0, inv.loc),
            })
            self.allocations.append((len(self.payments) - 1, i))
            inv.paid = inv.total

    # ------------------------------------------------------------------ inserts (AR)

    def _record_receivables(self) -> None:
        """Payments and their allocations (posted in _journal like receivables.record_payment),
        invoice and deposit states, and business-date timestamps on the engine's rows."""
        s = self.session
        pay_ids = insert_rows(s, Payment, self.payments)
        for row, id_ in zip(self.payments, pay_ids, strict=True):
            row["id"] = id_
        _insert(s, PaymentAllocation, [
            {"payment_id": self.payments[p]["id"], "invoice_id": self.invoices[i].id,
             "amount_cents": self.payments[p]["amount_cents"]}
            for p, i in self.allocations
        ])
        update_rows(s, Invoice, [
            {"b_id": inv.id, "status": "paid" if inv.paid >= inv.total else "open",
             "amount_paid_cents": inv.paid, "created_at": self._at(inv.issue, 5, 1, inv.loc)}
            for inv in self.invoices
        ])
        update_rows(s, Deposit, [{"b_id": d.id, "journal_entry_id": d.entry}
                                 for d in self.deposits if d.entry is not None])
        update_rows(s, Deposit, [
            {"b_id": d.id, "refunded_cents": d.amount, "refunded_on": d.refund_on,
             "status": "refunded"}
            for d in self.deposits if d.refund_on is not None
        ])
        run_t = BillingRun.__table__.c  # type: ignore[attr-defined]
        runs = s.execute(select(run_t.id, run_t.period).order_by(run_t.id)).all()
        update_rows(s, BillingRun, [
            {"b_id": run_id, "status": "issued",
             "started_at": self._at(_parse_month(period), 5, 0, 0),
             "finished_at": self._at(_parse_month(period), 5, 2, 0)}
            for run_id, period in runs
        ])

    # ------------------------------------------------------------------ people and vendors

    def _people_and_vendors(self) -> None:
        s = self.session
        loc_of = {loc.spec.code: loc for loc in self.locs}
        ids = insert_rows(s, Employee, [
            {"name": st.name, "email": f"{_slug(st.name.split()[0])}@deskbooks-demo.example",
             "tin": st.tin, "address": st.address, "bank_account_last4": st.bank_last4,
             "location_id": loc_of[st.location].id if st.location else self.locs[0].id,
             "title": st.title, "active": True}
            for st in STAFF
        ])
        self.employee_ids = dict(zip([st.key for st in STAFF], ids, strict=True))
        admin_id, admin_name = demo_data.ADMIN_USER
        users: list[dict[str, Any]] = [
            {"team_id": demo_data.TEAM_ID, "user_id": admin_id, "name": admin_name,
             "role": "admin", "location_id": None, "employee_id": None, "active": True}]
        users += [{"team_id": demo_data.TEAM_ID, "user_id": st.slack_user, "name": st.name,
                   "role": st.role, "location_id": loc_of[st.location].id if st.location else None,
                   "employee_id": self.employee_ids[st.key], "active": True}
                  for st in STAFF if st.slack_user]
        _insert(s, SlackUser, users)
        employee_banks = [st.bank_last4 for st in STAFF]
        rng = self.rng_space
        rows = []
        for v in VENDORS:
            while True:
                bank = f"{rng.randint(0, 9999):04d}"
                if bank not in employee_banks:
                    break
            rows.append({"name": v.name, "normalized_name": _normalized(v.name), "tin": v.tin,
                         "is_contractor": v.is_contractor, "address": v.address, "email": None,
                         "bank_account_last4": bank, "default_account_code": v.account,
                         "mcc": v.mcc, "created_at": self._at(self.range_start
                                                              - timedelta(days=30), 9, 0, 0)})
        self.vendor_ids = dict(zip([v.key for v in VENDORS], insert_rows(s, Vendor, rows),
                                   strict=True))
        self.vendor_specs = {v.key: v for v in VENDORS}
        self.gm_of = {0: "U0GMDT1", 1: "U0GMRS1", 2: "U0GMUT1"}
        self.staff_of = {0: "U0STAFF1", 1: "U0STAFF2", 2: "U0STAFF3"}

    # ------------------------------------------------------------------ bills and expenses

    def _near(self, vendor: str, on: date, amount: int) -> bool:
        """Would this charge look like a duplicate of a recent one from the same vendor?"""
        for day, other in self.vendor_history[vendor]:
            if abs((day - on).days) <= 90 and abs(other - amount) <= NEAR * max(other, amount):
                return True
        return False

    def _draw(self, vendor: str, on: date, low: int, high: int, *, whole: bool = False) -> int:
        """A variable amount in [low, high] that stays clear of the planted patterns."""
        rng = self.rng_books
        for _ in range(100):
            amount = rng.randint(low, high)
            if whole:
                amount = amount // 100 * 100
            if _in_band(amount) or amount >= CAPEX_THRESHOLD and self.vendor_specs[vendor] \
                    .account in ("5400", "6100", "6150", "6000", "6010"):
                continue
            if not self._near(vendor, on, amount):
                return amount
        raise ValueError(f"could not draw a clean amount for {vendor}")  # pragma: no cover

    def _sized(self, low: int, high: int) -> tuple[int, int]:
        """A purchase range grown with the space, kept under the capitalization threshold."""
        cap = CAPEX_THRESHOLD - 10_000
        return min(int(low * self.root), cap // 2), min(int(high * self.root), cap)

    def _fixed(self, amount: int) -> int:
        """A scaled recurring amount moved out of the just-under-threshold bands."""
        while _in_band(amount):
            amount = amount * 112 // 100
        return amount

    def _bill(self, vendor: str, loc: int, number: str, on: date, amount: int, memo: str,
              method: str = "ach", pay_after: int = 10, due_after: int = 30,
              account: str | None = None) -> _Bill:
        bill = _Bill(vendor, loc, number, on, amount, account or self.vendor_specs[vendor].account,
                     memo, method, due=on + timedelta(days=due_after))
        bill.paid_on = on + timedelta(days=pay_after)
        self.bills.append(bill)
        self.vendor_history[vendor].append((on, amount))
        return bill

    def _expense(self, vendor: str, loc: int, on: date, amount: int, description: str,
                 account: str | None = None, *, receipt: bool | None = None) -> _Expense:
        rng = self.rng_books
        spec = self.vendor_specs[vendor]
        slack = _chance(rng, 5_000) if receipt is None else receipt
        exp = _Expense(vendor, loc, on, amount, account or spec.account, description,
                       source="slack" if slack else "csv",
                       image=_sha(f"demo-receipt:{len(self.expenses)}:{vendor}:{on}") if slack
                       else None, submitted_by=self.staff_of[loc] if slack else None,
                       confidence=rng.randint(90, 99),
                       reason=f"Vendor rule: {spec.name} → {account or spec.account}")
        key = (spec.name, on, amount)
        if key in self.receipt_keys:  # pragma: no cover - guarded by _draw
            raise ValueError(f"duplicate demo receipt {key}")
        self.receipt_keys.add(key)
        self.expenses.append(exp)
        self.vendor_history[vendor].append((on, amount))
        return exp

    def _generate_books(self) -> None:
        self._planted_books()
        rng = self.rng_books
        months, ms = self.months, self.month_starts
        rent = {"DT": 3_800_000, "RS": 2_400_000, "UT": 3_100_000}
        utility = {"DT": 240_000, "RS": 190_000, "UT": 210_000}
        internet = {"DT": 79_900, "RS": 64_900, "UT": 71_900}
        cleaning = {"DT": 380_000, "RS": 260_000, "UT": 320_000}
        root = self.root
        start_k = {loc.idx: rng.randint(0, 2) for loc in self.locs}
        for k, first in enumerate(ms):
            last = _month_end(first)
            tag = f"{first:%Y%m}"
            for loc in self.locs:
                c, i = loc.spec.code, loc.idx
                self._bill(f"rent_{c}", i, f"RENT-{c}-{tag}", first, self._fixed(
                    self._scaled(rent[c])), f"Rent {_label(first)} — {loc.spec.name}",
                    pay_after=2, due_after=0)
                season = Decimal("1.25") if first.month in (6, 7, 8) else \
                    Decimal("1.15") if first.month in (12, 1, 2) else Decimal(1)
                base = Decimal(utility[c]) * self.scale * season
                on = first + timedelta(days=9)
                amount = self._draw(f"util_{c}", on, int(base * Decimal("0.92")),
                                    int(base * Decimal("1.08")))
                self._bill(f"util_{c}", i, f"{c}-{tag}-E", on, amount,
                           f"Electricity and water {_label(first)}", pay_after=14, due_after=21)
                self._bill(f"net_{c}", i, f"NET-{c}-{tag}", first + timedelta(days=4),
                           self._fixed(self._scaled(internet[c], root)),
                           f"Business fiber {_label(first)}", pay_after=6)
                self._bill("clean", i, f"BSJ-{c}-{tag}", last, self._fixed(
                    self._scaled(cleaning[c])), f"Janitorial services {_label(first)} — "
                    f"{loc.spec.name}", pay_after=12)
                if _chance(rng, 4_500):
                    on = first + timedelta(days=rng.randint(3, 26))
                    bill = self._bill("repair", i, f"MFR-{c}-{tag}", on,
                                      self._draw("repair", on, 22_000, 240_000),
                                      rng.choice(("HVAC service call", "Door lock repair",
                                                  "Plumbing repair", "Lighting ballast "
                                                  "replacement", "Glass door adjustment")),
                                      pay_after=rng.randint(10, 25))
                    if _chance(rng, 600) and bill.steps:
                        bill.status = "rejected"
                # card expenses
                for vendor, low, high, n, text in (
                    ("beans", 18_000, 52_000, 2, "Coffee beans for the coffee bar"),
                    ("costco", 12_000, 38_000, 1, "Snacks, milk and kitchen supplies"),
                    ("staples", 2_500, 26_000, rng.randint(1, 2), "Office supplies"),
                    ("amazon", 1_500, 32_000, rng.randint(1, 3), "Office supplies"),
                    ("homedepot", 1_800, 24_000, rng.randint(0, 2), "Hardware and fixtures"),
                    ("meals", 4_000, 18_000, rng.randint(0, 2), "Team lunch"),
                    ("events", 6_000, 35_000, int(_chance(rng, 6_000)),
                     "Member happy hour supplies"),
                    ("xerox", 18_000, 42_000, int((k + start_k[i]) % 3 == 0), "Toner cartridges"),
                ):
                    for _ in range(n):
                        on = first + timedelta(days=rng.randint(0, last.day - 1))
                        amount = self._draw(vendor, on, *self._sized(low, high))
                        self._expense(vendor, i, on, amount, text)
                on = first + timedelta(days=min(27, last.day - 1))
                self._expense("gads", i, on, self._draw(
                    "gads", on, int(40_000 * root), int(140_000 * root)),
                    f"Search ads {loc.spec.name}", receipt=False)
                on = first + timedelta(days=min(26, last.day - 1))
                self._expense("meta", i, on, self._draw(
                    "meta", on, int(20_000 * root), int(70_000 * root)),
                    f"Social ads {loc.spec.name}", receipt=False)
            # company-wide, billed to Downtown
            for vendor, day, amount in demo_data.SAAS:
                self._expense(vendor, 0, first.replace(day=day), amount,
                              f"{self.vendor_specs[vendor].name} subscription {_label(first)}",
                              receipt=False)
            self._bill("nexudus", 0, f"NX-{tag}", first.replace(day=3), 44_900,
                       f"Nexudus platform {_label(first)}", method="card", pay_after=0)
            self._bill("cpa", 0, f"CA-{tag}", first.replace(day=10), 125_000,
                       f"Monthly bookkeeping and tax retainer {_label(first)}",
                       pay_after=25)  # net 25: the last one is approved, awaiting payment
            self._bill("it", 0, f"BW-{tag}", first.replace(day=5), 65_000,
                       f"Managed IT support {_label(first)}", pay_after=10)
            if first.month in (1, 4, 7, 10):
                self._bill("insure", 0, f"HIG-{tag}", first.replace(day=7), 318_000,
                           f"General liability and property, quarter from {_label(first)}",
                           method="check", pay_after=20)
            if _chance(rng, 1_200):
                on = first.replace(day=rng.randint(5, 25))
                self._bill("law", 0, f"BLL-{tag}", on, self._draw("law", on, 150_000, 440_000,
                                                                  whole=True),
                           "Lease review and member agreement updates", pay_after=20)
            if _chance(rng, 2_000):
                on = first.replace(day=rng.randint(5, 25))
                self._bill("photo", rng.randrange(3), f"OEP-{tag}", on,
                           self._draw("photo", on, 40_000, 180_000, whole=True),
                           "Event photography", method="check", pay_after=14)
            if k % 4 == 1:
                on = first.replace(day=16)
                self._bill("designer", 1, f"LFD-{tag}", on,
                           self._draw("designer", on, 105_000, 160_000, whole=True),
                           "Brand and signage design", method="card", pay_after=3)
            if k == min(2, months - 1):
                self._bill("steelcase", 0, "SC-88412", first.replace(day=12), 1_486_000,
                           "Height-adjustable desks x 10 (Gesture chairs included)",
                           pay_after=25)
            if k == min(5, months - 1):
                self._expense("apple", 0, first.replace(day=18), 289_900,
                              'MacBook Pro 16" for the front desk', receipt=True)
        self._statuses()

    def _planted_books(self) -> None:
        """The planted payables and expenses (registered before the random ones, which then
        keep clear of them)."""
        months, ms = self.months, self.month_starts
        refs = self.planted_refs
        # duplicate_charge: the Nexudus invoice entered twice, and Adobe charged twice
        first = self._months_back(2)
        refs["dup_bill"] = len(self.bills)
        self._bill("nexudus", 0, f"NX-{first:%Y%m}-R", first.replace(day=5), 44_900,
                   f"Nexudus platform {_label(first)} (re-sent invoice)", method="card",
                   pay_after=0)
        refs["dup_card"] = len(self.expenses)
        self._expense("adobe", 0, self._months_back(3).replace(day=13), 8_999,
                      f"Adobe subscription {_label(self._months_back(3))}", receipt=False)
        # duplicate_receipt: one receipt submitted twice; one photo forwarded twice
        on = self._months_back(2).replace(day=16)
        refs["dup_receipt"] = len(self.expenses)
        self._expense("homedepot", 1, on, 18_437, "Shelving brackets and anchors", receipt=True)
        self.receipt_keys.discard(("The Home Depot", on, 18_437))
        second = self._expense("homedepot", 1, on, 18_437, "Shelving brackets and anchors",
                               receipt=True)
        second.submitted_by = self.gm_of[1]
        on = self._months_back(4).replace(day=9)
        refs["dup_image"] = len(self.expenses)
        first_copy = self._expense("costco", 2, on, 24_680, "Snacks and kitchen supplies",
                                   receipt=True)
        second = self._expense("costco", 2, on, 24_860, "Snacks and kitchen supplies",
                               receipt=True)
        second.image = first_copy.image
        second.submitted_by = self.gm_of[2]
        second.confidence = 74
        # capex_as_opex: a $3,200 chair coded to Office Supplies
        refs["capex"] = len(self.expenses)
        chair = self._expense("herman", 0, self._months_back(3).replace(day=21), 320_000,
                              "Aeron Chair, size B, graphite (1)", receipt=True)
        chair.confidence, chair.reason = 71, "Similar past expense: office furniture → 6100"
        # vendor_is_employee: a staff member's side business bills as a contractor
        refs["moonlight"] = len(self.bills)
        for j, (back, amount) in enumerate(((5, 72_000), (4, 76_500), (3, 74_000))):
            on = self._months_back(back).replace(day=25 - j)
            self._bill("moonlight", 1, f"JMC-{101 + j}", on, amount,
                       "Community event coordination", pay_after=3)
        # just_under_threshold: repeatedly just under $1,000 and just under $5,000
        refs["under_1000"] = len(self.bills)
        for back, day, amount in ((5, 6, 96_400), (4, 8, 97_800), (3, 5, 98_900),
                                  (2, 10, 99_650), (2, 24, 95_300)):
            on = self._months_back(back).replace(day=day)
            self._bill("apex", 1, f"AFS-{on:%Y%m%d}", on, amount,
                       "Facility maintenance (split work order)", pay_after=7)
        refs["under_5000"] = len(self.bills)
        for back, amount in ((4, 494_000), (3, 487_500), (2, 497_900)):
            on = self._months_back(back).replace(day=12)
            self._bill("summit", 2, f"SMG-{on:%Y%m%d}", on, amount,
                       "Launch campaign, phase invoice", pay_after=10)
        # contractor_missing_tin: a TIN-less handyman paid by check over the 1099 threshold
        year = self.last.year
        in_year = [k for k in range(months) if ms[k].year == year][-3:]
        refs["handyman"] = len(self.bills)
        for j, amount in enumerate((84_000, 79_500, 88_500)):
            k = in_year[j % len(in_year)]
            on = ms[k].replace(day=(4, 12, 19)[j] if len(in_year) < 3 else 15)
            self._bill("handyman", 1, f"DKH-{j + 1:03d}", on, amount,
                       "Handyman work: shelving, painting, door repairs", method="check",
                       pay_after=6)

    def _statuses(self) -> None:
        """Approval decisions, pending bills near the end of the books, payment dates."""
        rng = self.rng_books
        recent = self.range_end - timedelta(days=10)
        for bill in self.bills:
            steps = bill.steps
            gm = self.gm_of[bill.loc]
            if bill.status == "rejected":
                bill.approvals = [("gm", "rejected", gm, "Not ours: the landlord covers this "
                                   "repair under the lease")]
                bill.paid_on = None
                continue
            pending = bool(steps) and bill.bill_date > recent and _chance(rng, 6_000)
            decided = steps if not pending else (["gm"] if steps == ["gm", "cfo"] and
                                                 _chance(rng, 5_000) else [])
            for step in decided:
                bill.approvals.append((step, "approved", gm if step == "gm" else "U0CFO1", None))
            if pending:
                bill.status, bill.paid_on = "pending", None
            elif bill.paid_on is not None and bill.paid_on <= self.range_end:
                bill.status = "paid"
            else:
                bill.status, bill.paid_on = "approved", None

    # ------------------------------------------------------------------ inserts (AP)

    def _insert_books(self) -> None:
        s = self.session
        bill_ids = insert_rows(s, Bill, [
            {"vendor_id": self.vendor_ids[b.vendor], "location_id": self.locs[b.loc].id,
             "number": b.number, "bill_date": b.bill_date, "due_date": b.due,
             "amount_cents": b.amount, "tax_cents": 0, "account_code": b.account,
             "memo": b.memo, "status": b.status, "required_steps": b.steps,
             "payment_method": b.method if b.paid_on else None, "paid_on": b.paid_on,
             "journal_entry_id": None, "payment_journal_entry_id": None,
             "created_by": b.created_by, "slack_channel": None, "slack_ts": None,
             "created_at": self._at(b.bill_date, 9, 0, b.loc)}
            for b in self.bills
        ])
        for b, id_ in zip(self.bills, bill_ids, strict=True):
            b.id = id_
        approvals = []
        for b in self.bills:
            for n, (step, decision, who, reason) in enumerate(b.approvals):
                approvals.append({
                    "subject_type": "bill", "subject_id": b.id, "step": step,
                    "decision": decision, "decided_by": who, "on_behalf_of": None,
                    "reason": reason,
                    "decided_at": self._at(b.bill_date + timedelta(days=1 + n), 10 + 5 * n, 0,
                                           b.loc),
                })
        _insert(s, Approval, approvals)
        rows = []
        for e in self.expenses:
            spec = self.vendor_specs[e.vendor]
            code = self.locs[e.loc].spec.code
            ppm = demo_data.PURCHASE_TAX_PPM[code]
            tax = round_half_up(Decimal(e.amount) * ppm / (1_000_000 + ppm))
            slack = e.source == "slack"
            rows.append({
                "vendor_id": self.vendor_ids[e.vendor], "vendor_name": spec.name,
                "location_id": self.locs[e.loc].id, "expense_date": e.on,
                "amount_cents": e.amount, "tax_cents": tax, "currency": "USD",
                "account_code": e.account,
                "cost_center": _COST_CENTERS.get(e.account, "Operations"),
                "description": e.description, "payment_method": "card",
                "card_last4": self.locs[e.loc].spec.card_last4, "status": "posted",
                "source": e.source, "image_sha256": e.image,
                "ocr_text": (f"{spec.name.upper()}\n{e.on.isoformat()}\nTOTAL "
                             f"{e.amount // 100}.{e.amount % 100:02d}") if slack else None,
                "fields": ({"vendor": spec.name, "date": e.on.isoformat(), "total": e.amount,
                            "tax": tax, "currency": "USD",
                            "card_last4": self.locs[e.loc].spec.card_last4} if slack else {}),
                "category_confidence_pct": e.confidence, "category_reason": e.reason,
                "submitted_by": e.submitted_by,
                "confirmed_by": self.gm_of[e.loc] if slack else None,
                "journal_entry_id": None,
                "created_at": self._at(e.on, 17, 30, e.loc),
            })
        for e, id_ in zip(self.expenses, insert_rows(s, Expense, rows), strict=True):
            e.id = id_

    # ------------------------------------------------------------------ journal

    def _post(self, on: date, rank: int, memo: str, legs: list[Leg], source: str,
              source_id: int | None, *targets: tuple[str, int, str],
              key: str | None = None) -> None:
        self.drafts.append(_Draft(on, rank, EntryDraft(on, memo, legs, source, source_id, key),
                                  list(targets)))

    def _journal(self) -> None:
        self._journal_receivables()
        self._journal_payables()
        self._journal_operations()
        order = sorted(range(len(self.drafts)),
                       key=lambda i: (self.drafts[i].on, self.drafts[i].rank, i))
        drafts = [self.drafts[i] for i in order]
        ids = post_entries(self.session, [d.draft for d in drafts], actor=ACTOR,
                           audit_each=False)
        updates: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        for d, entry_id in zip(drafts, ids, strict=True):
            for table, index, column in d.targets:
                updates[(table, column)].append((index, entry_id))
        self.entry_ids = {id(d): e for d, e in zip(drafts, ids, strict=True)}
        sources: dict[str, tuple[Any, Any]] = {
            "invoice": (Invoice, lambda i: self.invoices[i].id),
            "payment": (Payment, lambda i: self.payments[i]["id"]),
            "bill": (Bill, lambda i: self.bills[i].id),
            "expense": (Expense, lambda i: self.expenses[i].id),
            "deposit": (Deposit, lambda i: self.deposits[i].id),
        }
        for (table, column), pairs in updates.items():
            model, id_of = sources[table]
            _update(self.session, model, column, sorted((id_of(i), e) for i, e in pairs))
        misposted = self.planted_refs["misposted"]
        self.planted_refs["misposted_entry"] = self.entry_ids[id(misposted)]

    def _journal_receivables(self) -> None:
        locs = self.locs
        # opening balances: owner's capital and deposits held from before the books start
        held: dict[int, list[int]] = defaultdict(list)
        for i, dep in enumerate(self.deposits):
            if dep.received_on < self.range_start:
                held[dep.loc].append(i)
        for loc in locs:
            capital = self._scaled(12_000_000)
            deposits = sum(self.deposits[i].amount for i in held[loc.idx])
            legs = [Leg("1000", capital + deposits, loc.id), Leg("3000", -capital, loc.id)]
            if deposits:
                legs.append(Leg("2300", -deposits, loc.id))
            self._post(self.range_start, 0, f"Opening balances — {loc.spec.name}", legs,
                       "opening", None, *[("deposit", i, "journal_entry_id")
                                          for i in held[loc.idx]])
        # deferred revenue of the engine's annual lines, recognized like
        # receivables.recognize_revenue (the planted unrecognized_deferred line is skipped)
        invoice_of = {inv.id: inv for inv in self.invoices}
        kestrel = self.named["kestrel"].n
        for line in self.deferred_lines:
            inv = invoice_of[line.invoice_id]
            if inv.member == kestrel:
                continue
            member_id = self.members[inv.member].id
            issue_month = period_of(inv.issue)
            for month, cents in recognition_schedule(line):  # type: ignore[arg-type]
                first = date(int(month[:4]), int(month[5:]), 1)
                if issue_month < month and first <= self.range_end and cents:
                    self._post(max(first, inv.issue), 2,
                               f"Recognize {month} of invoice line {line.id}",
                               [Leg("2200", cents, line.location_id, member_id=member_id),
                                Leg(line.account_code, -cents, line.location_id,
                                    member_id=member_id)],
                               "recognition", line.id, key=f"recognize:{line.id}:{month}")
        # payments, like receivables.record_payment: card to the processor clearing account,
        # cash and checks to undeposited funds, ACH straight to the bank
        payouts: dict[tuple[int, date], list[int]] = defaultdict(list)
        banked: dict[tuple[int, date], list[int]] = defaultdict(list)
        for p_idx, inv_idx in self.allocations:
            p = self.payments[p_idx]
            inv = self.invoices[inv_idx]
            m = self.members[inv.member]
            loc_id = locs[inv.loc].id
            self._post(p["received_on"], 3, f"Payment by {p['method']} ({p['reference']})",
                       [Leg(CLEARING_ACCOUNT[p["method"]], p["amount_cents"], loc_id,
                            member_id=m.id),
                        Leg("1100", -p["amount_cents"], loc_id, member_id=m.id)],
                       "payment", p["id"], ("payment", p_idx, "journal_entry_id"),
                       key=f"payment:{p['id']}")
            if p["method"] == "card":
                payouts[(inv.loc, p["received_on"] + timedelta(days=2))].append(p_idx)
            elif p["method"] in ("cash", "check"):
                day = p["received_on"] + timedelta(days=1)
                while day.weekday() >= 5:
                    day += timedelta(days=1)
                banked[(inv.loc, day)].append(p_idx)
        for (loc_idx, day), picks in sorted(payouts.items()):
            if day > self.range_end:
                continue
            gross = sum(self.payments[p]["amount_cents"] for p in picks)
            fees = sum(self.payments[p]["fee_cents"] for p in picks)
            loc = locs[loc_idx]
            self._post(day, 4, f"Card payout {day.isoformat()} — {loc.spec.name} "
                       f"({len(picks)} charges)",
                       [Leg("1000", gross - fees, loc.id), Leg("6600", fees, loc.id),
                        Leg("1050", -gross, loc.id)], "payout", None)
        for (loc_idx, day), picks in sorted(banked.items()):
            if day > self.range_end:
                continue
            total = sum(self.payments[p]["amount_cents"] for p in picks)
            loc = locs[loc_idx]
            self._post(day, 5, f"Bank deposit {day.isoformat()} — {loc.spec.name} "
                       f"({len(picks)} cash/check)",
                       [Leg("1000", total, loc.id), Leg("1010", -total, loc.id)],
                       "bank_deposit", None)
        # deposit refunds (the planted one lands in Owner Draws)
        harbor = self.named["harbor"]
        for i, dep in enumerate(self.deposits):
            if dep.refund_on is None:
                continue
            m = self.members[dep.member]
            loc_id = locs[dep.loc].id
            account = "3100" if m.n == harbor.n else "2300"
            self._post(dep.refund_on, 6, f"Deposit refund #{dep.id}",
                       [Leg(account, dep.amount, loc_id, member_id=m.id),
                        Leg("1000", -dep.amount, loc_id, member_id=m.id)],
                       "deposit", dep.id, ("deposit", i, "refund_journal_entry_id"))
            if m.n == harbor.n:
                self.planted_refs["misposted"] = self.drafts[-1]
                self.planted_refs["misposted_deposit"] = i

    def _journal_payables(self) -> None:
        locs = self.locs
        card_charges: dict[tuple[int, str], int] = defaultdict(int)  # (loc, YYYY-MM) -> cents
        for i, b in enumerate(self.bills):
            if b.status not in ("approved", "paid"):
                continue
            loc_id = locs[b.loc].id
            vendor = self.vendor_ids[b.vendor]
            name = self.vendor_specs[b.vendor].name
            self._post(b.bill_date, 7, f"Bill {b.number} — {name}",
                       [Leg(b.account, b.amount, loc_id, vendor_id=vendor),
                        Leg("2000", -b.amount, loc_id, vendor_id=vendor)],
                       "bill", b.id, ("bill", i, "journal_entry_id"))
            if b.status == "paid" and b.paid_on is not None:
                credit = "2500" if b.method == "card" else "1000"
                if b.method == "card":
                    card_charges[(b.loc, period_of(b.paid_on))] += b.amount
                self._post(b.paid_on, 8, f"Pay bill {b.number} ({b.method}) — {name}",
                           [Leg("2000", b.amount, loc_id, vendor_id=vendor),
                            Leg(credit, -b.amount, loc_id, vendor_id=vendor)],
                           "bill_payment", b.id, ("bill", i, "payment_journal_entry_id"))
        for i, e in enumerate(self.expenses):
            loc_id = locs[e.loc].id
            vendor = self.vendor_ids[e.vendor]
            card_charges[(e.loc, period_of(e.on))] += e.amount
            self._post(e.on, 9, f"Card: {self.vendor_specs[e.vendor].name} — {e.description}",
                       [Leg(e.account, e.amount, loc_id, vendor_id=vendor),
                        Leg("2500", -e.amount, loc_id, vendor_id=vendor)],
                       "expense", e.id, ("expense", i, "journal_entry_id"))
        for k, first in enumerate(self.month_starts[1:], start=1):
            previous = period_of(self.month_starts[k - 1])
            for loc in locs:
                total = card_charges.get((loc.idx, previous), 0)
                if total:
                    self._post(first.replace(day=20), 10,
                               f"Company card statement {previous} — {loc.spec.name}",
                               [Leg("2500", total, loc.id), Leg("1000", -total, loc.id)],
                               "card_statement", None)

    def _journal_operations(self) -> None:
        locs = self.locs
        taxes: dict[tuple[int, str], int] = defaultdict(int)
        for inv in self.invoices:
            taxes[(inv.loc, period_of(inv.issue))] += inv.tax
        payroll: dict[int, int] = defaultdict(int)
        loc_of = {loc.spec.code: loc.idx for loc in locs}
        for st in STAFF:
            payroll[loc_of[st.location] if st.location else 0] += st.monthly_pay_cents
        for k, first in enumerate(self.month_starts):
            last = _month_end(first)
            for loc in locs:
                if k > 0:
                    previous = period_of(self.month_starts[k - 1])
                    due = taxes.get((loc.idx, previous), 0)
                    if due:
                        self._post(first.replace(day=20), 11,
                                   f"Sales tax remittance {previous} — {loc.spec.name}",
                                   [Leg("2100", due, loc.id), Leg("1000", -due, loc.id)],
                                   "tax_remittance", None)
                half = payroll[loc.idx] // 2
                for day in (first.replace(day=15), last):
                    self._post(day, 12, f"Payroll {day.isoformat()} — {loc.spec.name}",
                               [Leg("6500", half, loc.id), Leg("1000", -half, loc.id)],
                               "payroll", None)

    # ------------------------------------------------------------------ budgets and summary

    def _mrr(self, day: date, loc: int | None = None) -> int:
        total = Decimal(0)
        for s in self.subs:
            if (loc is None or s.loc == loc) and s.in_service(day):
                total += Decimal(s.amount) / 12 if s.plan.annual else Decimal(s.amount)
        return round_half_up(total)

    def _budgets(self) -> None:
        rng = self.rng_space
        rows = []
        for first in self.month_starts:
            last = _month_end(first)
            total = 0
            for loc in self.locs:
                target = self._mrr(last, loc.idx) * rng.randint(940, 1070) // 1000 // 10_000 \
                    * 10_000
                total += target
                rows.append({"location_id": loc.id, "month": period_of(first), "metric": "mrr",
                             "amount_cents": target})
            rows.append({"location_id": None, "month": period_of(first), "metric": "mrr",
                         "amount_cents": total})
        _insert(self.session, BudgetTarget, rows)

    def _summary(self) -> DemoSummary:
        day = self.range_end
        active = sorted({s.member for s in self.subs if s.in_service(day)})
        return DemoSummary(
            members=len(self.members), active_members=len(active), locations=len(self.locs),
            invoices=len(self.invoices), payments=len(self.payments),
            expenses=len(self.expenses), bills=len(self.bills), usage_events=len(self.events),
            bookings=len(self.bookings),
            journal_entries=int(self.session.execute(
                select(func.count()).select_from(JournalEntry)).scalar_one()),
            first_month=period_of(self.first), last_month=period_of(self.last),
            mrr_cents=self._mrr(day), planted=self._planted(),
        )

    def _planted(self) -> tuple[PlantedProblem, ...]:
        refs, named = self.planted_refs, self.named

        def bills(start: int, n: int) -> list[int]:
            return [b.id for b in self.bills[start : start + n]]

        def expenses(start: int, n: int) -> list[int]:
            return [e.id for e in self.expenses[start : start + n]]

        def vendor(key: str) -> list[int]:
            return [self.vendor_ids[key]]

        jump, hours = refs["jump_invoice"]
        marcus = named["marcus"]
        dep = self.deposits[refs["misposted_deposit"]]
        kestrel = named["kestrel"]
        invoice_of = {inv.id: inv for inv in self.invoices}
        deferred_line = next(line for line in self.deferred_lines
                             if invoice_of[line.invoice_id].member == kestrel.n)
        deferred = invoice_of[deferred_line.invoice_id]
        moonlight = self.employee_ids[demo_data.MOONLIGHTING_EMPLOYEE]
        handyman_bills = bills(refs["handyman"], 3)
        handyman_total = sum(b.amount for b in self.bills[refs["handyman"]:refs["handyman"] + 3])
        year = self.last.year
        threshold = "$2,000" if year >= 2026 else "$600"
        return (
            PlantedProblem(
                "invoice_jump",
                f"{_possessive(marcus.name)} {jump.period} invoice {jump.number} is "
                f"{format_cents(jump.total)}: {hours.normalize():f} hours of board-room "
                "bookings on top of a hot desk",
                {"invoice": [jump.id], "member": [marcus.id]}),
            PlantedProblem(
                "duplicate_charge",
                "Nexudus's monthly platform invoice was entered twice (a re-sent copy two days "
                "later)",
                {"bill": [self.bills[refs["dup_bill"]].id] + [
                    b.id for b in self.bills if b.vendor == "nexudus"
                    and b.bill_date.replace(day=1) == self.bills[refs["dup_bill"]].bill_date
                    .replace(day=1) and b is not self.bills[refs["dup_bill"]]],
                 "vendor": vendor("nexudus")}),
            PlantedProblem(
                "duplicate_charge",
                "Adobe charged the company card twice for the same monthly subscription",
                {"expense": [e.id for e in self.expenses if e.vendor == "adobe"
                             and e.on.replace(day=1) == self.expenses[refs["dup_card"]].on
                             .replace(day=1)],
                 "vendor": vendor("adobe")}),
            PlantedProblem(
                "duplicate_receipt",
                "The same Home Depot receipt (same date and total) was submitted by two people",
                {"expense": expenses(refs["dup_receipt"], 2)}),
            PlantedProblem(
                "duplicate_receipt",
                "One Costco receipt photo was forwarded twice (same image; the second OCR read "
                "the total differently)",
                {"expense": expenses(refs["dup_image"], 2)}),
            PlantedProblem(
                "duplicate_customer",
                "ACME Design LLC is a second record for Acme Design (same email domain, phone and "
                "tax id)",
                {"member": [named["acme"].id, named["acme_dup"].id]}),
            PlantedProblem(
                "deposit_misposted",
                f"{_possessive(named['harbor'].name)} security deposit refund was posted to "
                "3100 Owner Draws instead of 2300",
                {"deposit": [dep.id], "journal_entry": [refs["misposted_entry"]],
                 "member": [named["harbor"].id]}),
            PlantedProblem(
                "capex_as_opex",
                "A $3,200 Herman Miller Aeron chair was expensed to 6100 Office Supplies",
                {"expense": expenses(refs["capex"], 1)}),
            PlantedProblem(
                "vendor_is_employee",
                "J. Morales Consulting shares its TIN and address with employee Jordan Morales",
                {"vendor": vendor("moonlight"), "employee": [moonlight],
                 "bill": bills(refs["moonlight"], 3)}),
            PlantedProblem(
                "just_under_threshold",
                "Apex Facility Services billed five times just under the $1,000 auto-approval "
                "limit",
                {"bill": bills(refs["under_1000"], 5), "vendor": vendor("apex")}),
            PlantedProblem(
                "just_under_threshold",
                "Summit Marketing Group billed three times just under the $5,000 CFO limit",
                {"bill": bills(refs["under_5000"], 3), "vendor": vendor("summit")}),
            PlantedProblem(
                "contractor_missing_tin",
                f"Dan Kowalski Handyman (no TIN on file) was paid {format_cents(handyman_total)}"
                f" by check in {year}, over the {threshold} 1099-NEC threshold",
                {"vendor": vendor("handyman"), "bill": handyman_bills}),
            PlantedProblem(
                "unrecognized_deferred",
                f"{_possessive(kestrel.name)} annual prepaid invoice {deferred.number} sits in "
                "2200 Deferred Revenue with no recognition entries although its service period "
                "started",
                {"invoice": [deferred.id], "invoice_line": [deferred_line.id],
                 "member": [kestrel.id]}),
        )


_COST_CENTERS = {
    "5400": "Facilities", "6000": "Member Experience", "6010": "Events", "6100": "Operations",
    "6150": "Operations", "6200": "Technology", "6300": "Marketing", "6950": "Operations",
    "1510": "Technology",
}


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"
