"""The demo space (DESIGN §10): named members, planted problems, balanced books, determinism.

One space (120 members, 12 months through 2026-10) is seeded per module and shared by the
read-only tests; the tests that need their own database seed a small one.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from finance import ledger, summary
from finance.billing import BillingEngine, BillingPolicy, deferred_part, recognition_schedule
from finance.demo import DemoSummary, seed_demo
from finance.models import (
    Account,
    Approval,
    AuditLog,
    Bill,
    BillingRun,
    Booking,
    Deposit,
    Employee,
    Expense,
    Invoice,
    InvoiceLine,
    JournalEntry,
    JournalLine,
    Location,
    Member,
    NumberSequence,
    Payment,
    Plan,
    SlackUser,
    Subscription,
    TaxRate,
    UsageEvent,
    Vendor,
)
from finance.services import Services, build_services
from finance.settings import load_settings

CLOCK = datetime(2026, 11, 29, 12, tzinfo=UTC)
LAST_DAY = date(2026, 10, 31)
ANOMALY_KINDS = {
    "invoice_jump", "duplicate_charge", "duplicate_receipt", "duplicate_customer",
    "deposit_misposted", "capex_as_opex", "vendor_is_employee", "just_under_threshold",
    "contractor_missing_tin", "unrecognized_deferred",
}
MODELS = {"invoice": Invoice, "member": Member, "bill": Bill, "vendor": Vendor,
          "expense": Expense, "deposit": Deposit, "journal_entry": JournalEntry,
          "employee": Employee, "invoice_line": InvoiceLine, "subscription": Subscription}


def make_services(path: Path) -> Services:
    """Services on a SQLite file with the fixed clock and default policies (no .env read)."""
    settings = load_settings(
        _env_file=None, DESKBOOKS_DATABASE_URL=f"sqlite:///{path}",
        DESKBOOKS_PRORATION_RULE="actual_days", DESKBOOKS_DOWNGRADE_TIMING="period_end",
        DESKBOOKS_INVOICE_PREFIX="INV",
    )
    services = build_services(settings, clock=lambda: CLOCK)
    services.init_schema(fast=True)
    return services


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, DemoSummary]]:
    services = make_services(tmp_path_factory.mktemp("demo") / "d.db")
    result = seed_demo(services, members=120, months=12)
    yield services, result
    services.dispose()


@pytest.fixture
def s(seeded: tuple[Services, DemoSummary]) -> Iterator[Session]:
    with seeded[0].session() as session:
        yield session


@pytest.fixture
def result(seeded: tuple[Services, DemoSummary]) -> DemoSummary:
    return seeded[1]


def rows(session: Session, stmt: Any) -> list[Any]:
    return list(session.execute(stmt))


def rows_scalar(session: Session, stmt: Any) -> list[Any]:
    return list(session.execute(stmt).scalars())


def planted(result: DemoSummary, kind: str, table: str) -> set[int]:
    return {i for p in result.planted if p.kind == kind for i in p.records.get(table, [])}


def member_by_name(session: Session, name: str) -> Member:
    return session.execute(select(Member).where(Member.name == name)).scalar_one()


# --------------------------------------------------------------------------- space and members


def test_summary_describes_the_range_and_matches_the_database(s, result):
    """The summary's months, counts, MRR and active members agree with the stored rows."""
    assert (result.first_month, result.last_month) == ("2025-11", "2026-10")
    counted = {name: s.execute(select(func.count()).select_from(model)).scalar_one()
               for name, model in (("members", Member), ("locations", Location),
                                   ("invoices", Invoice), ("payments", Payment),
                                   ("expenses", Expense), ("bills", Bill),
                                   ("usage_events", UsageEvent), ("bookings", Booking),
                                   ("journal_entries", JournalEntry))}
    assert counted == {name: getattr(result, name) for name in counted}
    assert result.members == 120
    assert result.mrr_cents == summary.mrr_cents(s, LAST_DAY) > 0
    assert result.active_members == summary.active_members(s, LAST_DAY) > 60


def test_locations_plans_rooms_and_tax_rates(s):
    """Three USD locations with their zones, desk-type plans, meeting rooms and tax rates."""
    locs = {loc.code: loc for loc in s.execute(select(Location)).scalars()}
    assert {c: (loc.name, loc.timezone, loc.currency) for c, loc in locs.items()} == {
        "DT": ("Downtown", "America/New_York", "USD"),
        "RS": ("Riverside", "America/Chicago", "USD"),
        "UT": ("Uptown", "America/Los_Angeles", "USD"),
    }
    names = set(s.execute(select(Plan.name)).scalars())
    for label in ("Hot Desk", "Dedicated Desk", "Private Office"):
        assert {f"{label} ({loc.name})" for loc in locs.values()} <= names
    assert "Virtual Office" in names
    offices = s.execute(select(Plan).where(Plan.desk_type == "private_office")).scalars().all()
    assert all(p.deposit_cents > 0 and p.price_cents >= 60_000 for p in offices)
    for loc in locs.values():
        rooms = rows(s, select(Booking.resource_id).where(Booking.location_id == loc.id))
        assert rooms, f"no meeting-room bookings in {loc.code}"
    dt_rates = dict(rows(s, select(TaxRate.line_kind, TaxRate.rate_ppm)
                         .where(TaxRate.location_id == locs["DT"].id)))
    assert dt_rates["meeting_room"] == dt_rates["food_beverage"] == 88_750
    assert dt_rates.get("membership", 0) == 0  # desk rental is exempt downtown


def test_invoice_line_taxes_follow_the_rate_table(s):
    """Every line's tax is its location's rate for its kind (knowledge/tax_rates.yaml)."""
    rates = {(loc, kind): ppm for loc, kind, ppm in
             rows(s, select(TaxRate.location_id, TaxRate.line_kind, TaxRate.rate_ppm))}
    for line in s.execute(select(InvoiceLine)).scalars():
        expected = 0 if line.kind == "deposit" else rates.get((line.location_id, line.kind), 0)
        assert line.tax_rate_ppm == expected
        exact = Decimal(line.amount_cents) * expected / 1_000_000
        assert abs(Decimal(line.tax_cents) - exact) <= Decimal("0.5")


def test_named_members_each_have_a_prorated_mid_month_plan_change(s):
    """Acme Design, Bluebird Labs, Northwind Studio and Priya Shah each change plan mid-month."""
    for name in ("Acme Design", "Bluebird Labs", "Northwind Studio", "Priya Shah"):
        member = member_by_name(s, name)
        subs = {sub.id: sub for sub in s.execute(
            select(Subscription).where(Subscription.member_id == member.id)).scalars()}
        changes = [sub for sub in subs.values() if sub.replaces_id is not None
                   and sub.start_date.day != 1]
        assert changes, f"{name} has no mid-month change"
        new = changes[0]
        old = subs[new.replaces_id]
        assert old.end_date == new.start_date - timedelta(days=1)
        lines = s.execute(select(InvoiceLine).where(
            InvoiceLine.kind == "proration",
            InvoiceLine.subscription_id.in_([old.id, new.id]))).scalars().all()  # type: ignore[union-attr]
        assert sorted(line.amount_cents < 0 for line in lines) == [False, True]
        assert all(line.service_start == new.start_date for line in lines)
        billed_on = {s.get(Invoice, line.invoice_id).issue_date for line in lines}  # type: ignore[union-attr]
        next_month = (new.start_date.replace(day=1) + timedelta(days=32)).replace(day=1)
        assert billed_on == {next_month}  # in arrears, with the next monthly invoice


def test_priya_shah_upgrade_reproduces_the_design_worked_example(s):
    """$600 -> $900 on Mar 11 (actual_days): credit -$406.45, charge $609.68 on April's bill."""
    priya = member_by_name(s, "Priya Shah")
    invoice = s.execute(select(Invoice).where(Invoice.member_id == priya.id,
                                              Invoice.period == "2026-04")).scalar_one()
    lines = s.execute(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id,
                                                InvoiceLine.kind == "proration")).scalars().all()
    assert sorted(line.amount_cents for line in lines) == [-40_645, 60_968]
    assert all(line.service_start == date(2026, 3, 11) for line in lines)
    assert all(line.service_end == date(2026, 3, 31) for line in lines)


def test_members_have_stable_codes_companies_and_multi_seat_subscriptions(s):
    """Codes are M-000001.. in order; companies hold subscriptions with quantity > 1."""
    codes = list(s.execute(select(Member.code).order_by(Member.id)).scalars())
    assert codes == [f"M-{i:06d}" for i in range(1, len(codes) + 1)]
    kinds = dict(rows(s, select(Member.kind, func.count()).group_by(Member.kind)))
    assert kinds["company"] > 10 and kinds["person"] > 50
    multi = s.execute(select(func.count()).select_from(Subscription).join(
        Member, Member.id == Subscription.member_id).where(
        Member.kind == "company", Subscription.quantity > 1)).scalar_one()
    assert multi > 10


def test_roles_staff_and_employees(s):
    """Slack users carry every role (a GM per location); employees exist for payroll."""
    users = s.execute(select(SlackUser)).scalars().all()
    assert {u.team_id for u in users} == {"T0DEMO"}
    roles = defaultdict(list)
    for u in users:
        roles[u.role].append(u)
    assert {"admin", "cfo", "manager", "gm", "staff"} <= set(roles)
    assert "U0MANAGER1" in {u.user_id for u in roles["manager"]}
    assert len({u.location_id for u in roles["gm"]}) == 3
    assert s.execute(select(func.count()).select_from(Employee)).scalar_one() >= 8


def test_timestamps_are_aware_utc(s):
    """Bookings, usage events and members read back as timezone-aware UTC datetimes."""
    booking = s.execute(select(Booking).limit(1)).scalar_one()
    event = s.execute(select(UsageEvent).limit(1)).scalar_one()
    member = s.execute(select(Member).limit(1)).scalar_one()
    for stamp in (booking.start_at, event.occurred_at, member.created_at):
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- books


def test_trial_balance_is_zero_and_every_entry_balances_with_a_location(s):
    """The ledger balances overall and per entry, and every line carries a location."""
    assert ledger.trial_balance(s).is_balanced
    unbalanced = rows(s, select(JournalLine.entry_id).group_by(JournalLine.entry_id)
                      .having(func.sum(JournalLine.amount_cents) != 0))
    assert unbalanced == []
    assert s.execute(select(func.count()).select_from(JournalLine)
                     .where(JournalLine.location_id.is_(None))).scalar_one() == 0  # type: ignore[union-attr]


def test_invoice_totals_add_up_and_match_their_postings(s):
    """total = lines + tax, and each invoice entry debits A/R and credits lines and tax."""
    lines: dict[int, list[InvoiceLine]] = defaultdict(list)
    for line in s.execute(select(InvoiceLine)).scalars():
        lines[line.invoice_id].append(line)
    legs: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry_id, code, amount in rows(s, select(
            JournalLine.entry_id, Account.code, JournalLine.amount_cents)
            .join(Account, Account.id == JournalLine.account_id)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.source_type == "invoice")):
        legs[entry_id][code] += amount
    invoices = s.execute(select(Invoice)).scalars().all()
    for inv in invoices:
        own = lines[inv.id]
        assert inv.subtotal_cents == sum(line.amount_cents for line in own)
        assert inv.tax_cents == sum(line.tax_cents for line in own)
        assert inv.total_cents == inv.subtotal_cents + inv.tax_cents > 0
        expected: dict[str, int] = defaultdict(int)
        for line in own:
            expected[line.account_code] -= line.amount_cents - line.deferred_cents
            expected["2200"] -= line.deferred_cents
        expected["1100"] += inv.total_cents
        expected["2100"] -= inv.tax_cents
        assert {k: v for k, v in legs[inv.journal_entry_id].items() if v} == \
            {k: v for k, v in expected.items() if v}
    open_ar = sum(inv.total_cents - inv.amount_paid_cents for inv in invoices)
    assert ledger.balance(s, "1100") == open_ar > 0
    statuses = {inv.status for inv in invoices}
    assert statuses == {"paid", "open"}


def test_invoice_numbers_are_sequential_without_gaps(s):
    """INV-YYYY-NNNNNN in issue order, never reset across years, recorded in the sequence."""
    found = rows(s, select(Invoice.number, Invoice.issue_date).order_by(Invoice.number.desc()))
    found.sort(key=lambda r: int(r[0].rsplit("-", 1)[1]))
    assert [int(n.rsplit("-", 1)[1]) for n, _ in found] == list(range(1, len(found) + 1))
    assert all(n.startswith(f"INV-{day.year}-") for n, day in found)
    assert [day for _, day in found] == sorted(day for _, day in found)
    assert {day.year for _, day in found} == {2025, 2026}
    assert s.get(NumberSequence, "invoice").last_value == len(found)  # type: ignore[union-attr]


def test_payments_clear_receivables_and_card_fees_hit_6600(s):
    """Payments credit A/R by method; card payouts move clearing to cash net of fees."""
    by_method = dict(rows(s, select(Payment.method, func.count()).group_by(Payment.method)))
    assert set(by_method) == {"card", "cash", "check", "ach"}
    paid = s.execute(select(func.sum(Invoice.amount_paid_cents))).scalar_one()
    assert s.execute(select(func.sum(Payment.amount_cents))).scalar_one() == paid
    assert all(p.journal_entry_id for p in s.execute(select(Payment)).scalars())
    assert ledger.balance(s, "6600") > 0
    assert ledger.balance(s, "1050") >= 0 and ledger.balance(s, "1010") >= 0
    card_fees = s.execute(select(func.sum(Payment.fee_cents))).scalar_one()
    assert 0 < ledger.balance(s, "6600") <= card_fees


def test_deposits_sit_on_2300_and_refunds_are_recorded(s, result):
    """Held deposits equal the 2300 balance (the planted refund missed 2300)."""
    deposits = s.execute(select(Deposit)).scalars().all()
    held = sum(d.amount_cents for d in deposits if d.status == "held")
    misposted = planted(result, "deposit_misposted", "deposit")
    missed = sum(d.amount_cents for d in deposits if d.id in misposted)
    assert -ledger.balance(s, "2300") == held + missed
    assert any(d.status == "refunded" and d.id not in misposted for d in deposits)
    assert all(d.journal_entry_id for d in deposits)
    assert all(d.refund_journal_entry_id for d in deposits if d.status == "refunded")


def test_annual_plans_defer_revenue_and_recognize_it_monthly(s, result):
    """Annual lines defer later months to 2200; each started month is recognized on the 1st."""
    annual = s.execute(select(InvoiceLine).where(InvoiceLine.deferred_cents > 0)).scalars().all()
    assert len(annual) >= 3
    assert {line.account_code for line in annual} == {"4010"}
    skipped = planted(result, "unrecognized_deferred", "invoice_line")
    entries = defaultdict(dict)
    for line_id, key, day in rows(s, select(JournalEntry.source_id, JournalEntry.idempotency_key,
                                            JournalEntry.entry_date)
                                  .where(JournalEntry.source_type == "recognition")):
        entries[line_id][key] = day
    outstanding = 0
    for line in annual:
        issued = s.get(Invoice, line.invoice_id).issue_date  # type: ignore[union-attr]
        assert line.deferred_cents == deferred_part(line, issued)
        due = {f"recognize:{line.id}:{month}": cents
               for month, cents in recognition_schedule(line)
               if f"{issued:%Y-%m}" < month <= "2026-10"}
        if line.id in skipped:
            assert due and line.id not in entries
            outstanding += line.deferred_cents
        else:
            assert set(entries[line.id]) == set(due)
            assert all(day.day == 1 for day in entries[line.id].values())
            outstanding += line.deferred_cents - sum(due.values())
    assert -ledger.balance(s, "2200") == outstanding > 0


def test_usage_is_billed_in_arrears_and_door_access_never(s):
    """Billed usage events and bookings sum to their invoice lines; door counts are unbilled."""
    door_billed = s.execute(select(func.count()).select_from(UsageEvent).where(
        UsageEvent.kind == "door_access", UsageEvent.invoice_line_id.is_not(None))).scalar_one()  # type: ignore[union-attr]
    assert door_billed == 0
    by_line: dict[int, int] = defaultdict(int)
    for line_id, qty, unit in rows(s, select(UsageEvent.invoice_line_id, UsageEvent.quantity,
                                             UsageEvent.unit_price_cents)
                                   .where(UsageEvent.invoice_line_id.is_not(None))):  # type: ignore[union-attr]
        by_line[line_id] += qty * unit
    for line_id, amount in rows(s, select(Booking.invoice_line_id, Booking.amount_cents)
                                .where(Booking.invoice_line_id.is_not(None))):  # type: ignore[union-attr]
        by_line[line_id] += amount
    assert by_line
    lines = dict(rows(s, select(InvoiceLine.id, InvoiceLine.amount_cents)
                      .where(InvoiceLine.id.in_(list(by_line)))))  # type: ignore[union-attr]
    assert lines == dict(by_line)
    kinds = set(s.execute(select(UsageEvent.kind).distinct()).scalars())
    assert kinds == {"print", "coffee", "door_access", "day_pass"}
    # usage of the last month waits for the next billing run
    last_billed = s.execute(select(func.max(UsageEvent.occurred_at))
                            .where(UsageEvent.invoice_line_id.is_not(None))).scalar_one()  # type: ignore[union-attr]
    assert last_billed < datetime(2026, 10, 2, tzinfo=UTC)


def test_bills_follow_the_approval_thresholds(s):
    """Approved and paid bills carry a decision per required step (GM, then CFO)."""
    approvals: dict[int, set[str]] = defaultdict(set)
    for subject, step, decision in rows(s, select(Approval.subject_id, Approval.step,
                                                  Approval.decision)):
        if decision == "approved":
            approvals[subject].add(step)
    statuses = set()
    for bill in s.execute(select(Bill)).scalars():
        statuses.add(bill.status)
        expected = (["gm", "cfo"] if bill.amount_cents > 500_000 else
                    ["gm"] if bill.amount_cents > 100_000 else [])
        assert bill.required_steps == expected
        if bill.status in ("approved", "paid"):
            assert approvals[bill.id] == set(expected)
            assert bill.journal_entry_id
        if bill.status == "paid":
            assert bill.payment_journal_entry_id and bill.paid_on
    assert {"paid", "approved"} <= statuses
    assert ledger.balance(s, "5000") > 0 and ledger.balance(s, "2000") <= 0


def test_budget_targets_bracket_actual_mrr(s):
    """Monthly MRR targets exist per location and in total, within a few percent of actual."""
    from finance.models import BudgetTarget

    targets = s.execute(select(BudgetTarget).where(BudgetTarget.month == "2026-10")).scalars().all()
    assert len(targets) == 4
    total = next(t for t in targets if t.location_id is None)
    actual = summary.mrr_cents(s, LAST_DAY)
    assert 0.9 * actual <= total.amount_cents <= 1.1 * actual


# --------------------------------------------------------------------------- planted problems


def test_every_anomaly_kind_is_planted_with_existing_records(s, result):
    """One or more planted problems per DESIGN §5 kind, each naming records that exist."""
    assert {p.kind for p in result.planted} == ANOMALY_KINDS
    for p in result.planted:
        assert p.description and p.records
        for table, ids in p.records.items():
            assert ids
            for record_id in ids:
                assert s.get(MODELS[table], record_id) is not None, (p.kind, table, record_id)


def test_only_the_planted_invoice_jumps(s, result):
    """No monthly invoice but the planted one exceeds 2x its member's trailing 3-month median."""
    history: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for inv_id, member, total in rows(s, select(Invoice.id, Invoice.member_id,
                                                 Invoice.total_cents)
                                      .where(Invoice.period.is_not(None))  # type: ignore[union-attr]
                                      .order_by(Invoice.period, Invoice.id)):
        history[member].append((inv_id, total))
    jumps = set()
    for invoices in history.values():
        for i in range(3, len(invoices)):
            median = statistics.median(total for _, total in invoices[i - 3 : i])
            if invoices[i][1] > 2 * median:
                jumps.add(invoices[i][0])
    assert jumps == planted(result, "invoice_jump", "invoice")


def test_only_planted_duplicates_among_receipts_and_charges(s, result):
    """Same vendor+date+total or same image only in planted pairs; no other near-duplicates."""
    expenses = s.execute(select(Expense)).scalars().all()
    groups: dict[Any, list[int]] = defaultdict(list)
    for e in expenses:
        groups[(e.vendor_name, e.expense_date, e.amount_cents)].append(e.id)
        if e.image_sha256:
            groups[e.image_sha256].append(e.id)
    flagged = {i for ids in groups.values() if len(ids) > 1 for i in ids}
    assert flagged == planted(result, "duplicate_receipt", "expense")
    charges = [("expense", e.id, e.vendor_id, e.expense_date, e.amount_cents) for e in expenses]
    charges += [("bill", b.id, b.vendor_id, b.bill_date, b.amount_cents)
                for b in s.execute(select(Bill)).scalars()]
    by_vendor: dict[int, list[Any]] = defaultdict(list)
    for charge in charges:
        by_vendor[charge[2]].append(charge)
    near = set()
    for items in by_vendor.values():
        items.sort(key=lambda c: c[3])
        for i, a in enumerate(items):
            for b in items[i + 1 :]:
                if (b[3] - a[3]).days >= 25:
                    break
                if abs(a[4] - b[4]) <= Decimal("0.005") * max(a[4], b[4]):
                    near |= {(a[0], a[1]), (b[0], b[1])}
    # the planted double charges, plus the receipt submitted twice (same vendor and amount by
    # nature); the photo forwarded twice differs by 0.7 % and is no near-duplicate charge
    same_receipt = next(p for p in result.planted if p.kind == "duplicate_receipt")
    expected = {("bill", i) for i in planted(result, "duplicate_charge", "bill")}
    expected |= {("expense", i) for i in planted(result, "duplicate_charge", "expense")}
    expected |= {("expense", i) for i in same_receipt.records["expense"]}
    assert near == expected


def test_only_acme_has_a_duplicate_customer_record(s, result):
    """Names, company email domains and tax ids are unique except the Acme pair."""
    members = s.execute(select(Member)).scalars().all()
    keys: dict[Any, list[int]] = defaultdict(list)
    for m in members:
        keys[("name", m.name.lower().replace(" llc", ""))].append(m.id)
        if m.tax_id:
            keys[("tax", m.tax_id)].append(m.id)
        domain = (m.email or "").split("@")[-1]
        if m.kind == "company":
            keys[("domain", domain)].append(m.id)
    dupes = {i for ids in keys.values() if len(ids) > 1 for i in ids}
    assert dupes == planted(result, "duplicate_customer", "member")
    acme = member_by_name(s, "Acme Design")
    assert acme.id in dupes


def test_only_the_planted_deposit_refund_misses_2300(s, result):
    """Every refund entry debits 2300 except the planted one, which debits 3100."""
    debits = {}
    for d in s.execute(select(Deposit).where(Deposit.status == "refunded")).scalars():
        legs = ledger.entry_legs(s, d.refund_journal_entry_id)
        debits[d.id] = {leg.account for leg in legs if leg.amount_cents > 0}
    misposted = planted(result, "deposit_misposted", "deposit")
    assert {i for i, accts in debits.items() if accts != {"2300"}} == misposted
    assert all(debits[i] == {"3100"} for i in misposted)


def test_only_the_planted_items_break_payables_rules(s, result):
    """CapEx, employee-vendor, just-under-threshold and 1099 TIN rules hold except planted."""
    item_accounts = ("5400", "6000", "6010", "6100", "6150", "6200")
    capex = {e.id for e in s.execute(select(Expense)).scalars()
             if e.amount_cents >= 250_000 and e.account_code in item_accounts}
    capex_bills = [b.id for b in s.execute(select(Bill)).scalars()
                   if b.amount_cents >= 250_000 and b.account_code in item_accounts]
    assert capex == planted(result, "capex_as_opex", "expense") and capex_bills == []
    assert ledger.balance(s, "1500") > 0 and ledger.balance(s, "1510") > 0

    employees = s.execute(select(Employee)).scalars().all()
    marks = {m for e in employees for m in (e.tin, e.address, e.bank_account_last4,
                                            e.name.lower()) if m}
    matching = {v.id for v in s.execute(select(Vendor)).scalars()
                if {v.tin, v.address, v.bank_account_last4, v.name.lower()} & marks}
    assert matching == planted(result, "vendor_is_employee", "vendor")

    bills = s.execute(select(Bill)).scalars().all()
    under = {b.id for b in bills
             if any(0.9 * t <= b.amount_cents <= t for t in (100_000, 500_000))}
    assert under == planted(result, "just_under_threshold", "bill")

    vendors = {v.id: v for v in s.execute(select(Vendor)).scalars()}
    paid: dict[tuple[int, int], int] = defaultdict(int)
    for b in bills:
        v = vendors[b.vendor_id]
        if b.status == "paid" and v.is_contractor and not v.tin and b.payment_method != "card":
            paid[(v.id, b.paid_on.year)] += b.amount_cents
    over = {v for (v, year), total in paid.items() if total > (200_000 if year >= 2026 else 60_000)}
    assert over == planted(result, "contractor_missing_tin", "vendor")
    card_only = next(v for v in vendors.values() if v.name == "Lena Fischer Design")
    assert card_only.tin is None and any(b.vendor_id == card_only.id for b in bills)


def test_the_billing_engine_billed_every_demo_month(s, result):
    """Each month was run, approved and issued by BillingEngine as the system actor."""
    runs = rows(s, select(BillingRun.period, BillingRun.scope, BillingRun.status,
                          BillingRun.invoices_created, BillingRun.started_by)
                .order_by(BillingRun.period))
    assert [r[0] for r in runs] == [f"{2025 + (10 + k) // 12}-{(10 + k) % 12 + 1:02d}"
                                    for k in range(12)]
    assert {(r[1], r[2], r[4]) for r in runs} == {("all", "issued", "system:demo")}
    assert sum(r[3] for r in runs) == result.invoices
    actions = dict(rows(s, select(AuditLog.action, func.count())
                        .where(AuditLog.actor == "system:demo").group_by(AuditLog.action)))
    assert actions["billing.run"] == actions["invoice.issue"] == 12
    assert set(rows_scalar(s, select(Invoice.approved_by).distinct())) == {"system:demo"}
    issued = rows(s, select(Invoice.period, Invoice.issue_date).distinct())
    assert all(day == date(int(p[:4]), int(p[5:]), 1) for p, day in issued)


def test_the_billing_engine_computes_the_same_invoices(seeded):
    """For a demo month, BillingEngine.compute gives the stored invoices' keys and totals."""
    services, _ = seeded
    engine = BillingEngine(services.chart, BillingPolicy.from_settings(services.settings))
    for period in ("2026-04", "2026-08"):
        with Session(services.engine) as session:  # rolled back: the demo stays as it is
            stored = {inv.idempotency_key: inv for inv in session.execute(
                select(Invoice).where(Invoice.period == period)).scalars()}
            ids = [inv.id for inv in stored.values()]
            lines = select(InvoiceLine.id).where(InvoiceLine.invoice_id.in_(ids))  # type: ignore[attr-defined]
            for model in (UsageEvent, Booking):  # release what the stored invoices billed
                session.execute(update(model).where(model.invoice_line_id.in_(lines))  # type: ignore[attr-defined]
                                .values(invoice_line_id=None))
            session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(ids)))  # type: ignore[attr-defined]
            session.execute(update(Invoice).where(Invoice.id.in_(ids))  # type: ignore[union-attr]
                            .values(period=None, idempotency_key=None))
            first = date(int(period[:4]), int(period[5:]), 1)
            session.execute(delete(Deposit).where(Deposit.received_on == first))
            drafts = engine.compute(session, period)
            assert {d.key: d.total_cents for d in drafts} == \
                {key: inv.total_cents for key, inv in stored.items()}
            session.rollback()


def test_the_next_billing_run_bills_what_the_demo_left_for_it(seeded, s):
    """The run after the last month bills October's usage and changes, and nothing twice."""
    services, _ = seeded
    engine = BillingEngine(services.chart, BillingPolicy.from_settings(services.settings))
    assert engine.compute(s, "2026-10") == []  # the demo's months are billed
    drafts = engine.compute(s, "2026-11")
    lines = [line for d in drafts for line in d.lines]
    usage = sum(line.amount_cents for line in lines if line.kind in
                ("printing", "food_beverage", "day_pass", "meeting_room"))
    unbilled = sum(q * p for q, p in rows(s, select(UsageEvent.quantity,
                                                    UsageEvent.unit_price_cents)
                                          .where(UsageEvent.invoice_line_id.is_(None))))  # type: ignore[union-attr]
    unbilled += sum(rows_scalar(s, select(Booking.amount_cents).where(
        Booking.invoice_line_id.is_(None), Booking.status == "confirmed")))  # type: ignore[union-attr]
    assert usage == unbilled > 0
    assert all(line.service_start >= date(2026, 10, 1) for line in lines if line.service_start)
    assert {line.kind for line in lines} >= {"membership", "meeting_room"}


# --------------------------------------------------------------------------- determinism, refusal


def fingerprint(services: Services) -> dict[str, Any]:
    """The business data of a seeded space, for comparing two seeds."""
    with services.session() as session:
        return {
            "members": rows(session, select(Member.code, Member.name, Member.email,
                                            Member.created_at).order_by(Member.id)),
            "invoices": rows(session, select(Invoice.number, Invoice.total_cents,
                                             Invoice.status, Invoice.issue_date)
                             .order_by(Invoice.id)),
            "lines": rows(session, select(InvoiceLine.description, InvoiceLine.amount_cents)
                          .order_by(InvoiceLine.id)),
            "usage": rows(session, select(UsageEvent.external_id, UsageEvent.occurred_at)
                          .order_by(UsageEvent.id)),
            "journal": rows(session, select(JournalEntry.entry_date, JournalEntry.memo,
                                            JournalLine.amount_cents)
                            .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
                            .order_by(JournalLine.id)),
            "expenses": rows(session, select(Expense.vendor_name, Expense.amount_cents,
                                             Expense.image_sha256).order_by(Expense.id)),
        }


def test_same_arguments_give_the_same_space(seeded, tmp_path):
    """A second seed with the same arguments into another database is identical."""
    services, first = seeded
    other = make_services(tmp_path / "again.db")
    again = seed_demo(other, members=120, months=12, through="2026-10", seed=7)
    assert again == first
    assert fingerprint(other) == fingerprint(services)
    other.dispose()


def test_another_seed_gives_another_space(tmp_path):
    """A different seed changes the members and the invoices."""
    one = make_services(tmp_path / "a.db")
    two = make_services(tmp_path / "b.db")
    seed_demo(one, members=40, months=4, seed=1)
    seed_demo(two, members=40, months=4, seed=2)
    a, b = fingerprint(one), fingerprint(two)
    assert a["members"][:8] == b["members"][:8]  # the named and planted members come first
    assert a["members"] != b["members"] and a["invoices"] != b["invoices"]
    one.dispose()
    two.dispose()


def test_seeding_twice_is_refused_and_writes_nothing(seeded):
    """A database that already has members is refused with a clear error, untouched."""
    services, first = seeded
    with pytest.raises(ValueError, match="already holds 120 members"):
        seed_demo(services, members=20, months=4)
    with services.session() as session:
        assert session.execute(select(func.count()).select_from(Invoice)).scalar_one() \
            == first.invoices


@pytest.mark.parametrize("kwargs, message", [
    ({"members": 5}, "members must be"),
    ({"months": 2}, "months must be"),
    ({"through": "2026-13"}, "real month"),
    ({"through": "Oct 2026"}, "YYYY-MM"),
    ({"seed": 1.5}, "seed must be"),
])
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    """Too few members or months and malformed months are refused before anything is written."""
    services = make_services(tmp_path / "bad.db")
    with pytest.raises(ValueError, match=message):
        seed_demo(services, **kwargs)
    with services.session() as session:
        assert session.execute(select(func.count()).select_from(Location)).scalar_one() == 0
    services.dispose()


def test_a_failure_midway_leaves_the_database_empty(tmp_path, monkeypatch):
    """Seeding is one transaction: an error while posting leaves no rows behind."""
    from finance import demo

    services = make_services(tmp_path / "fail.db")

    def broken(*args: Any, **kwargs: Any) -> list[int]:
        raise ledger.LedgerError("simulated failure")

    monkeypatch.setattr(demo, "post_entries", broken)
    with pytest.raises(ledger.LedgerError):
        seed_demo(services, members=20, months=4)
    with services.session() as session:
        for model in (Member, Location, Invoice, UsageEvent):
            assert session.execute(select(func.count()).select_from(model)).scalar_one() == 0
    services.dispose()


def test_small_space_on_both_backends(services):
    """A minimal space seeds on SQLite and PostgreSQL with balanced books and every kind."""
    result = seed_demo(services, members=20, months=4, through="2026-10")
    assert {p.kind for p in result.planted} == ANOMALY_KINDS
    with services.session() as session:
        assert ledger.trial_balance(session).is_balanced
        ids = list(session.execute(select(Invoice.id).order_by(Invoice.number)).scalars())
        assert ids == sorted(ids)
        linked = session.execute(select(func.count()).select_from(Invoice)
                                 .where(Invoice.journal_entry_id.is_(None))).scalar_one()  # type: ignore[union-attr]
        assert linked == 0
