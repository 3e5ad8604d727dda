"""CSV imports: members, plans, subscriptions, payments (generic, Stripe, Square)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from finance import ledger
from finance.authz import Actor, NotAuthorized
from finance.billing import BillingEngine, BillingPolicy
from finance.imports import (
    ImportFileError,
    import_members,
    import_payments,
    import_plans,
    import_subscriptions,
)
from finance.models import (
    AuditLog,
    Invoice,
    Location,
    Member,
    Payment,
    PaymentAllocation,
    Plan,
    Subscription,
)
from tests.helpers import all_rows, build_space, count

ADMIN = Actor.system("test-import")


def csv_bytes(text: str, *, bom: bool = False) -> bytes:
    body = "\n".join(line.strip() for line in text.strip().splitlines()) + "\n"
    return (b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8")


@pytest.fixture
def space(services):
    """Downtown (New York) with plans and roles, plus Uptown in Los Angeles."""
    with services.session() as s:
        built = build_space(s, services.settings.knowledge_path)
        s.add(Location(code="UT", name="Uptown", timezone="America/Los_Angeles"))
    return built


def errors(report):
    return {(e.line, e.column) for e in report.rejected}


MEMBERS_OK = """
code,name,kind,email,phone,tax_id,company,home_location,external_id,joined_on
ACME,Acme Design,company,billing@acme.example,555-0100,12-3456789,,DT,crm-1,2025-01-15
,Priya Shah,person,PRIYA@example.com,,,ACME,Downtown,crm-2,2025-02-01
,"Lee, Jordan",person,,,,,UT,crm-3,
,,,,,,,,,
"""


def test_members_import_creates_members_with_company_links_and_an_audit_row(services, space):
    """A BOM file with a company, a person in it (by code) and blank rows imports 3 members."""
    report = import_members(services, ADMIN, csv_bytes(MEMBERS_OK, bom=True), file="m.csv")
    assert report.ok and (report.rows, report.imported, report.skipped_existing) == (3, 3, 0)
    with services.session() as s:
        members = {m.name: m for m in all_rows(s, Member, Member.id)}
        assert members["Priya Shah"].company_id == members["Acme Design"].id
        assert members["Priya Shah"].email == "priya@example.com"
        assert members["Priya Shah"].code.startswith("M-")
        assert members["Lee, Jordan"].home_location_id is not None
        assert members["Acme Design"].joined_on == date(2025, 1, 15)
        audit = s.execute(select(AuditLog).where(AuditLog.action == "import.members")).scalar_one()
        assert audit.details["imported"] == 3


def test_members_reimport_adds_nothing(services, space):
    """The same file twice: the second import skips every row by its natural key."""
    import_members(services, ADMIN, csv_bytes(MEMBERS_OK))
    again = import_members(services, ADMIN, csv_bytes(MEMBERS_OK))
    assert (again.imported, again.skipped_existing, again.rejected) == (0, 3, [])
    with services.session() as s:
        assert count(s, Member) == 3
        assert count(s, AuditLog, action="import.members") == 1


def test_members_every_bad_row_is_reported_and_nothing_is_written(services, space):
    """Each kind of bad cell is reported with its line and column; the good row is not kept."""
    data = csv_bytes("""
        code,name,kind,email,home_location,company,joined_on
        GOOD,Good Member,person,good@example.com,DT,,2025-01-01
        A1,,person,a1@example.com,DT,,
        A2,Bad Kind,robot,a2@example.com,DT,,
        A3,Bad Email,person,not-an-email,DT,,
        A4,Nowhere,person,a4@example.com,Mars,,
        A5,Orphan,person,a5@example.com,DT,NOPE,
        A6,Person Parent,person,a6@example.com,DT,GOOD,
        A7,Bad Date,person,a7@example.com,DT,,2025-13-01
        A8,Twin,person,good@example.com,DT,,
        bad code!,Bad Code,person,a9@example.com,DT,,
        A10,Stray,person,a10@example.com,DT,,,extra
    """)
    report = import_members(services, ADMIN, data)
    assert errors(report) == {
        (3, "name"), (4, "kind"), (5, "email"), (6, "home_location"), (7, "company"),
        (8, "company"), (9, "joined_on"), (10, "email"), (11, "code"), (12, None)}
    assert report.imported == 0 and not report.ok
    assert "is a person" in next(e.reason for e in report.rejected if e.line == 8)
    assert "repeats line 2" in next(e.reason for e in report.rejected if e.line == 10)
    with services.session() as s:
        assert count(s, Member) == 0


def test_import_needs_a_finance_role(services, space):
    """Staff cannot import; nothing is written."""
    with pytest.raises(NotAuthorized):
        import_members(services, Actor("USTAFF", "T1"), csv_bytes(MEMBERS_OK))
    report = import_members(services, Actor("UMGR", "T1"), csv_bytes(MEMBERS_OK))
    assert report.imported == 3


def test_file_level_problems_raise_a_clear_error(services, space):
    """A missing required column, binary data or an empty file is one clear error."""
    with pytest.raises(ImportFileError, match="missing column.*name"):
        import_members(services, ADMIN, b"code,email\nX,x@example.com\n")
    with pytest.raises(ImportFileError, match="binary"):
        import_members(services, ADMIN, b"\x00\x01\x02name\n")
    with pytest.raises(ImportFileError, match="empty"):
        import_members(services, ADMIN, b"\n\n")
    with pytest.raises(ImportFileError, match="cannot read"):
        import_members(services, ADMIN, "/nonexistent/members.csv")


PLANS_OK = """
name,desk_type,price,location,interval,deposit,currency
Hot Desk,Hot Desk,"1,250.00",UT,monthly,0,USD
Private Office,private_office,$2500,UT,month,"2,500.00",
Virtual Office,virtual_office,99,,year,,
"""


def test_plans_import_and_reimport(services, space):
    """Plans per name and location import once (thousands separators, $, derived codes)."""
    report = import_plans(services, ADMIN, csv_bytes(PLANS_OK))
    assert report.ok and report.imported == 3
    assert import_plans(services, ADMIN, csv_bytes(PLANS_OK)).skipped_existing == 3
    with services.session() as s:
        plans = {p.code: p for p in all_rows(s, Plan, Plan.id)}
        assert plans["HOT-DESK-UT"].price_cents == 125_000
        assert plans["HOT-DESK-UT"].desk_type == "hot_desk"
        assert plans["PRIVATE-OFFICE-UT"].deposit_cents == 250_000
        virtual = plans["VIRTUAL-OFFICE"]
        assert virtual.interval == "year" and virtual.location_id is None
        assert count(s, Plan) == 4 + 3


def test_plans_bad_rows(services, space):
    """Bad desk type, negative price, fractional cents, interval, currency and duplicates."""
    data = csv_bytes("""
        name,desk_type,price,location,interval,currency
        A,sofa,100,UT,month,
        B,hot_desk,-5,UT,month,
        C,hot_desk,10.005,UT,month,
        D,hot_desk,10,UT,weekly,
        E,hot_desk,10,UT,month,EUR
        F,hot_desk,10,UT,month,
        F,hot_desk,12,UT,month,
        G,hot_desk,(10.00),UT,month,
    """)
    report = import_plans(services, ADMIN, data)
    assert errors(report) == {(2, "desk_type"), (3, "price"), (4, "price"), (5, "interval"),
                              (6, "currency"), (8, "name"), (9, "price")}
    with services.session() as s:
        assert count(s, Plan) == 4


def _members_and_plans(services):
    import_members(services, ADMIN, csv_bytes(MEMBERS_OK))
    import_plans(services, ADMIN, csv_bytes(PLANS_OK))


def test_subscriptions_import_and_reimport(services, space):
    """Subscriptions by member code/email/external id and plan name or code; once only."""
    _members_and_plans(services)
    data = csv_bytes("""
        member,plan,start_date,location,end_date,quantity,unit_price,billing_anchor_day
        ACME,Private Office,2025-02-01,UT,,2,,
        priya@example.com,Hot Desk,2025-02-01,DT,2025-06-30,,250.00,
        crm-3,HOT-DESK-UT,2025-03-15,,,,,
    """)
    report = import_subscriptions(services, ADMIN, data)
    assert report.ok and report.imported == 3
    assert import_subscriptions(services, ADMIN, data).skipped_existing == 3
    with services.session() as s:
        subs = all_rows(s, Subscription, Subscription.id)
        assert [(x.quantity, x.unit_price_cents, x.billing_anchor_day) for x in subs] == [
            (2, 250_000, 1), (1, 25_000, 1), (1, 125_000, 15)]
        hot_dt = s.execute(select(Plan).where(Plan.code == "HOT")).scalar_one()
        assert subs[1].plan_id == hot_dt.id  # the Downtown plan, not Uptown's Hot Desk
        assert subs[1].end_date == date(2025, 6, 30)


def test_subscriptions_bad_rows(services, space):
    """Unknown member or plan, end before start, bad quantity and anchor, repeated rows."""
    _members_and_plans(services)
    data = csv_bytes("""
        member,plan,start_date,end_date,quantity,billing_anchor_day,location
        nobody,Hot Desk,2025-01-01,,,,DT
        ACME,Sofa Plan,2025-01-01,,,,DT
        ACME,Hot Desk,2025-05-01,2025-04-01,,,DT
        ACME,Hot Desk,2025-01-01,,0,,DT
        ACME,Hot Desk,2025-01-01,,,32,DT
        ACME,Hot Desk,,,,,DT
        ACME,HOT,2025-02-01,,,,DT
        ACME,HOT,2025-02-01,,,,DT
        ACME,HOT-DESK-UT,2025-02-01,,,,DT
    """)
    report = import_subscriptions(services, ADMIN, data)
    assert errors(report) == {(2, "member"), (3, "plan"), (4, "end_date"), (5, "quantity"),
                              (6, "billing_anchor_day"), (7, "start_date"), (9, "start_date"),
                              (10, "location")}
    with services.session() as s:
        assert count(s, Subscription) == 0


PAYMENTS_OK = """
external_id,member,date,amount,method,fee,reference
p-1,ACME,2026-02-03,"1,000.00",ach,,ACH 123
p-2,priya@example.com,2026-02-04,25.50,card,1.04,visa
p-3,crm-3,2026-02-05,(0.00),cash,,
"""


def test_payments_post_through_receivables_and_reimport_adds_nothing(services, space):
    """Payments post Dr cash/clearing Cr A/R; a zero amount is rejected; re-import adds none."""
    _members_and_plans(services)
    bad = import_payments(services, ADMIN, csv_bytes(PAYMENTS_OK))
    assert errors(bad) == {(4, "amount")}
    good = csv_bytes(PAYMENTS_OK.replace("(0.00)", "12.00"))
    report = import_payments(services, ADMIN, good)
    assert report.ok and report.imported == 3
    again = import_payments(services, ADMIN, good)
    assert (again.imported, again.skipped_existing) == (0, 3)
    with services.session() as s:
        assert count(s, Payment) == 3
        assert ledger.balance(s, "1000") == 100_000
        assert ledger.balance(s, "1050") == 2_550
        assert ledger.balance(s, "1010") == 1_200
        assert ledger.balance(s, "1100") == -(100_000 + 2_550 + 1_200)
        assert ledger.trial_balance(s).is_balanced
        card = s.execute(select(Payment).where(Payment.external_id == "p-2")).scalar_one()
        assert card.fee_cents == 104


def test_payments_bad_rows(services, space):
    """Unknown member, fractional cents, unknown method, bad date, repeated id, no invoice."""
    _members_and_plans(services)
    data = csv_bytes("""
        external_id,member,date,amount,method,invoice,location
        q-1,nobody,2026-02-01,10,ach,,DT
        q-2,ACME,2026-02-01,10.001,ach,,DT
        q-3,ACME,2026-02-01,10,bitcoin,,DT
        q-4,ACME,02/01/2026,10,ach,,DT
        q-5,ACME,2026-02-01,10,ach,,DT
        q-5,ACME,2026-02-01,10,ach,,DT
        q-6,ACME,2026-02-01,10,ach,INV-404,DT
        q-7,ACME,2026-02-01,10,ach,,Atlantis
    """)
    report = import_payments(services, ADMIN, data)
    assert errors(report) == {(2, "member"), (3, "amount"), (4, "method"), (5, "date"),
                              (7, "external_id"), (8, "invoice"), (9, "location")}
    with services.session() as s:
        assert count(s, Payment) == 0 and count(s, AuditLog, action="import.payments") == 0


def test_payment_with_an_invoice_number_pays_that_invoice(services, space):
    """A payment naming an issued invoice is allocated to it and marks it paid."""
    from tests.helpers import add_member

    with services.session() as s:
        member_id, _ = add_member(s, "M-1", "Bluebird Labs", plan_id=space["plans"]["ded"],
                                  location_id=space["location"], start=date(2026, 1, 1),
                                  price_cents=60_000)
        engine = BillingEngine(services.chart, BillingPolicy())
        run = engine.run(s, "2026-02", actor=ADMIN, dry_run=False)
        engine.approve(s, run.invoice_ids, actor=ADMIN)
        engine.issue(s, run.invoice_ids, actor=ADMIN, on=date(2026, 2, 1))
        inv = s.execute(select(Invoice).where(Invoice.member_id == member_id)).scalar_one()
    data = csv_bytes(f"""
        external_id,member,date,amount,method,invoice
        inv-pay-1,M-1,2026-02-10,{inv.total_cents / 100:.2f},check,{inv.number}
    """)
    report = import_payments(services, ADMIN, data)
    assert report.ok and report.imported == 1
    with services.session() as s:
        alloc = s.execute(select(PaymentAllocation)).scalar_one()
        assert alloc.invoice_id == inv.id and alloc.amount_cents == inv.total_cents
        assert s.get(Invoice, inv.id).status == "paid"


STRIPE = (
    "id,Description,Seller Message,Created (UTC),Amount,Amount Refunded,Currency,"
    "Converted Amount,Converted Amount Refunded,Fee,Tax,Converted Currency,Mode,Status,"
    "Statement Descriptor,Customer ID,Customer Description,Customer Email,Captured,Card ID,"
    "Card Last4,Card Brand,Card Funding,Card Exp Month,Card Exp Year,Card Name,"
    "Invoice ID,Invoice Number\n"
    "ch_1,Hot Desk March,Payment complete.,2026-03-01 02:00:00,300.00,0.00,usd,300.00,0.00,"
    "9.00,0.00,usd,Live,Paid,DESKBOOKS,cus_9,Acme Design,billing@acme.example,true,card_1,"
    "4242,Visa,credit,12,2030,Acme,,\n"
    "ch_2,Day pass,Declined,2026-03-01 15:00:00,25.00,0.00,usd,25.00,0.00,0.00,0.00,usd,Live,"
    "Failed,DESKBOOKS,cus_9,Acme Design,billing@acme.example,false,card_1,4242,Visa,credit,12,"
    "2030,Acme,,\n"
    "ch_3,Office,Payment complete.,2026-03-02 18:30:00,1000.00,200.00,usd,1000.00,200.00,"
    "29.30,0.00,usd,Live,Partially refunded,DESKBOOKS,,Priya Shah,,true,card_2,1881,"
    "MasterCard,debit,1,2029,Priya,,\n"
    "ch_4,Locker,Payment complete.,2026-03-03 18:30:00,20.00,20.00,usd,20.00,20.00,0.88,0.00,"
    "usd,Live,Refunded,DESKBOOKS,,,priya@example.com,true,card_2,1881,MasterCard,debit,1,2029,"
    "Priya,,\n"
)


def test_stripe_export_dates_are_local_and_failed_or_refunded_rows_are_ignored(services, space):
    """Created (UTC) 2026-03-01T02:00Z is Feb 28 in Los Angeles; net of refunds; fees kept."""
    _members_and_plans(services)
    report = import_payments(services, ADMIN, STRIPE.encode(), format="stripe", location="UT")
    assert report.ok, report.rejected
    assert (report.rows, report.imported) == (4, 2)
    assert {(e.line, e.column) for e in report.ignored} == {(3, "Status"), (5, "Amount Refunded")}
    with services.session() as s:
        p1 = s.execute(select(Payment).where(Payment.external_id == "stripe:ch_1")).scalar_one()
        assert (p1.received_on, p1.amount_cents, p1.fee_cents, p1.method) == (
            date(2026, 2, 28), 30_000, 900, "card")
        assert p1.reference == "Visa ····4242"
        p3 = s.execute(select(Payment).where(Payment.external_id == "stripe:ch_3")).scalar_one()
        assert (p3.amount_cents, p3.received_on) == (80_000, date(2026, 3, 2))
        assert ledger.balance(s, "1050") == 110_000
    again = import_payments(services, ADMIN, STRIPE.encode(), format="stripe", location="UT")
    assert (again.imported, again.skipped_existing) == (0, 2)


def test_stripe_export_bad_rows(services, space):
    """Wrong currency, unknown customer, bad timestamp and unknown status are rejected."""
    _members_and_plans(services)
    head = "id,Created (UTC),Amount,Currency,Status,Customer Email,Fee\n"
    rows = ("ch_a,2026-03-01 10:00:00,10.00,eur,Paid,billing@acme.example,0.59\n"
            "ch_b,2026-03-01 10:00:00,10.00,usd,Paid,who@nowhere.example,0.59\n"
            "ch_c,03/01/2026 10:00,10.00,usd,Paid,billing@acme.example,0.59\n"
            "ch_d,2026-03-01 10:00:00,10.00,usd,Exploded,billing@acme.example,0.59\n"
            "ch_e,2026-03-01 10:00:00,10.00,usd,Paid,,0.59\n")
    report = import_payments(services, ADMIN, (head + rows).encode(), format="stripe",
                             location="UT")
    assert errors(report) == {(2, "Currency"), (3, "Customer Email"), (4, "Created (UTC)"),
                              (5, "Status"), (6, "Customer Email")}
    with pytest.raises(ImportFileError, match="Stripe payments export"):
        import_payments(services, ADMIN, b"id,Amount\nch_1,10\n", format="stripe")


SQUARE = (
    "Date,Time,Time Zone,Gross Sales,Discounts,Service Charges,Net Sales,Gift Card Sales,Tax,"
    "Tip,Partial Refunds,Total Collected,Source,Card,Card Entry Methods,Cash,Square Gift Card,"
    "Other Tender,Other Tender Type,Other Tender Note,Fees,Net Total,Transaction ID,"
    "Payment ID,Card Brand,PAN Suffix,Device Name,Staff Name,Staff ID,Details,Description,"
    "Event Type,Location,Dining Option,Customer ID,Customer Name,Customer Reference ID\n"
    "2026-03-01,01:30:00,Eastern Time (US & Canada),$40.00,$0.00,$0.00,$40.00,$0.00,$3.55,"
    "$0.00,$0.00,$43.55,Point of Sale,$43.55,Tapped,$0.00,$0.00,$0.00,,,-$1.26,$42.29,tx1,"
    "pay1,Visa,1111,iPad,Sam,S1,,Coffee & day pass,Payment,Uptown,,sqc1,Acme Design,ACME\n"
    "2026-03-02,09:00:00,Pacific Time (US & Canada),\"$1,200.00\",$0.00,$0.00,\"$1,200.00\","
    "$0.00,$0.00,$0.00,$0.00,\"$1,200.00\",Point of Sale,$0.00,,\"$1,200.00\",$0.00,$0.00,,,"
    "$0.00,\"$1,200.00\",tx2,pay2,,,iPad,Sam,S1,,Office rent,Payment,Uptown,,,Priya Shah,\n"
    "2026-03-03,10:00:00,Pacific Time (US & Canada),-$40.00,$0.00,$0.00,-$40.00,$0.00,-$3.55,"
    "$0.00,$0.00,-$43.55,Point of Sale,-$43.55,Tapped,$0.00,$0.00,$0.00,,,$1.26,-$42.29,tx3,"
    "pay3,Visa,1111,iPad,Sam,S1,,Refund,Refund,Uptown,,sqc1,Acme Design,ACME\n"
)


def test_square_export_maps_tenders_time_zones_and_ignores_refunds(services, space):
    """Eastern 01:30 on Mar 1 is Feb 28 in Los Angeles; cash tender is cash; refunds ignored."""
    _members_and_plans(services)
    report = import_payments(services, ADMIN, SQUARE.encode(), format="square")
    assert report.ok, report.rejected
    assert (report.imported, [(e.line, e.column) for e in report.ignored]) == (
        2, [(4, "Event Type")])
    with services.session() as s:
        p1 = s.execute(select(Payment).where(Payment.external_id == "square:pay1")).scalar_one()
        assert (p1.received_on, p1.amount_cents, p1.fee_cents, p1.method, p1.reference) == (
            date(2026, 2, 28), 4_355, 126, "card", "Visa ····1111")
        p2 = s.execute(select(Payment).where(Payment.external_id == "square:pay2")).scalar_one()
        assert (p2.method, p2.amount_cents, p2.received_on) == ("cash", 120_000, date(2026, 3, 2))
        ut = s.execute(select(Location).where(Location.code == "UT")).scalar_one()
        assert p1.location_id == ut.id == p2.location_id
    assert import_payments(services, ADMIN, SQUARE.encode(), format="square").skipped_existing == 2


@pytest.fixture
def fuzz_services(sqlite_services):
    with sqlite_services.session() as s:
        build_space(s, sqlite_services.settings.knowledge_path)
    return sqlite_services


def assert_accounted(report):
    """Every row is imported, already present, ignored or rejected; rejected means none in."""
    if report.rejected:
        assert report.imported == 0
        assert len({e.line for e in report.rejected}) <= report.rows
    else:
        assert report.imported + report.skipped_existing + len(report.ignored) == report.rows


IMPORTERS = [
    (import_members, {}), (import_plans, {}), (import_subscriptions, {}),
    (import_payments, {"format": "generic"}), (import_payments, {"format": "stripe"}),
    (import_payments, {"format": "square"}),
]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), which=st.integers(0, len(IMPORTERS) - 1))
def test_random_bytes_never_crash_an_importer(fuzz_services, data, which):
    """Random bytes give either a report or a clear ImportFileError, never a crash."""
    fn, kwargs = IMPORTERS[which]
    try:
        report = fn(fuzz_services, ADMIN, data, dry_run=True, **kwargs)
    except ImportFileError as exc:
        assert str(exc)
    else:
        assert_accounted(report)


HEADERS = [MEMBERS_OK.strip().splitlines()[0], "name,desk_type,price,location,interval",
           "member,plan,start_date,location,end_date,quantity",
           "external_id,member,date,amount,method,fee,location,invoice"]
cells = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", "DT", "ACME", "2025-01-01", "(1,000.50)", "$-3", "1e9", "NaN", "hot_desk", "card",
     "x@y.z", "\"", "0", "-1", "31", "99999999999999999999"]))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), rows=st.lists(st.lists(cells, max_size=10), max_size=6))
def test_random_rows_give_a_report_or_a_clear_error(fuzz_services, which, rows):
    """Random cells under a real header are validated row by row; nothing crashes."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS[which].split(","))
    writer.writerows(rows)
    fn = [import_members, import_plans, import_subscriptions, import_payments][which]
    try:
        report = fn(fuzz_services, ADMIN, out.getvalue().encode(), dry_run=True)
    except ImportFileError as exc:
        assert str(exc)
    else:
        assert_accounted(report)


@pytest.mark.slow
def test_cli_import_reports_rejections_with_exit_code_2(tmp_path, monkeypatch):
    """`deskbooks import members` prints the report; rejected rows exit 2 and write nothing."""
    from bot.cli import app
    from finance.services import build_services
    from finance.settings import load_settings

    runner = CliRunner()
    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    assert runner.invoke(app, ["init"]).exit_code == 0
    svc = build_services(load_settings())
    with svc.session() as s:
        build_space(s, svc.settings.knowledge_path)
    good = tmp_path / "members.csv"
    good.write_bytes(csv_bytes(MEMBERS_OK.replace(",UT,", ",DT,")))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name,email\n,x@example.com\n")
    result = runner.invoke(app, ["import", "members", str(bad), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["rejected"] == [
        {"line": 2, "column": "name", "reason": "required value is empty"}]
    result = runner.invoke(app, ["import", "members", str(good)])
    assert result.exit_code == 0, result.output
    assert "imported 3" in result.stdout
    result = runner.invoke(app, ["import", "plans", str(good)])
    assert result.exit_code == 2 and "missing column" in result.stderr
    with svc.session() as s:
        assert count(s, Member) == 3
    svc.dispose()


@pytest.fixture
def twin_services(backend, tmp_path):
    """A second, independent store on the same backend as ``services``."""
    from finance import db
    from finance.services import build_services
    from finance.settings import load_settings
    from tests.conftest import FIXED_NOW, postgres_url

    settings = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path / "twin"))
    if backend == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path / 'twin.db'}")
        svc = build_services(settings, clock=lambda: FIXED_NOW, engine=engine)
        svc.init_schema(fast=True)
        yield svc
        engine.dispose()
        return
    with db.scratch_postgres_schema(postgres_url(), "twin") as engine:
        svc = build_services(settings, clock=lambda: FIXED_NOW, engine=engine)
        svc.init_schema(fast=True)
        yield svc


def _billed_space(svc):
    """Two members with issued February and March invoices."""
    from tests.helpers import add_member

    with svc.session() as s:
        space = build_space(s, svc.settings.knowledge_path)
        for code, plan in (("M-1", "ded"), ("M-2", "hot")):
            add_member(s, code, code, plan_id=space["plans"][plan],
                       location_id=space["location"], start=date(2026, 1, 1),
                       price_cents=60_000 if plan == "ded" else 30_000)
        engine = BillingEngine(svc.chart, BillingPolicy())
        for period in ("2026-02", "2026-03"):
            run = engine.run(s, period, actor=ADMIN, dry_run=False)
            engine.approve(s, run.invoice_ids, actor=ADMIN)
            engine.issue(s, run.invoice_ids, actor=ADMIN, on=date.fromisoformat(period + "-01"))


def _snapshot(svc):
    from finance.models import JournalEntry, JournalLine

    with svc.session() as s:
        pays = {p.id: p for p in all_rows(s, Payment, Payment.id)}
        numbers = {i.id: i.number for i in all_rows(s, Invoice, Invoice.id)}
        lines = {}
        for line in all_rows(s, JournalLine, JournalLine.id):
            entry = s.get(JournalEntry, line.entry_id)
            if entry.source_type == "payment":
                lines.setdefault(pays[entry.source_id].external_id, []).append(
                    (entry.memo, entry.entry_date, entry.idempotency_key == f"payment:{entry.source_id}",
                     line.account_id, line.amount_cents, line.member_id))
        return {
            "payments": sorted((p.external_id, p.amount_cents, p.fee_cents, p.method,
                                p.received_on, p.reference, p.journal_entry_id is not None)
                               for p in pays.values()),
            "allocations": sorted((pays[a.payment_id].external_id, numbers[a.invoice_id],
                                   a.amount_cents) for a in all_rows(s, PaymentAllocation,
                                                                     PaymentAllocation.id)),
            "invoices": sorted((i.number, i.status, i.amount_paid_cents)
                               for i in all_rows(s, Invoice, Invoice.id)),
            "entries": sorted((k, sorted(v)) for k, v in lines.items()),
            "audit": sorted((a.action, a.details.get("amount_cents"),
                             a.details.get("unapplied_cents"))
                            for a in all_rows(s, AuditLog, AuditLog.id)
                            if a.action == "payment.record"),
            "balanced": ledger.trial_balance(s).is_balanced,
        }


def test_batch_payments_equal_record_payment_row_by_row(services, twin_services):
    """The bulk path leaves exactly what record_payment leaves: rows, allocations, entries."""
    _billed_space(services)
    _billed_space(twin_services)
    with services.session() as s:
        m1 = sorted(i.number for i in all_rows(s, Invoice, Invoice.id) if i.member_id == 1)
        m2 = sorted(i.number for i in all_rows(s, Invoice, Invoice.id) if i.member_id == 2)
    data = csv_bytes(f"""
        external_id,member,date,amount,method,fee,reference,invoice
        a,M-1,2026-03-05,100.00,card,3.20,visa,
        b,M-1,2026-03-06,"2,000.00",ach,,wire,
        c,M-2,2026-03-07,50.00,check,,#12,{m2[1]}
        d,M-2,2026-03-08,400.00,cash,,,
        e,M-1,2026-03-09,10.00,card,,,{m1[0]}
    """)
    fast = import_payments(services, ADMIN, data)
    slow = import_payments(twin_services, ADMIN, data, batch=False)
    assert fast.ok and slow.ok and fast.imported == slow.imported == 5
    got, want = _snapshot(services), _snapshot(twin_services)
    assert got == want
    assert want["balanced"] and len(want["allocations"]) >= 4
    assert any(status == "paid" for _, status, _ in want["invoices"])
