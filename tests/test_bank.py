"""Bank statements (real OFX/QFX files, CSV with a mapping) and bank reconciliation."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from finance import ledger
from finance.authz import Actor, NotAuthorized
from finance.bank import CsvMapping, import_bank, parse_ofx, reconcile
from finance.imports import ImportFileError, import_members, import_payments
from finance.ledger import EntryDraft, Leg
from finance.models import (
    AuditLog,
    BankTransaction,
    Bill,
    Expense,
    JournalEntry,
    Location,
    Payment,
    Vendor,
)
from tests.helpers import all_rows, build_space, count

DATA = Path(__file__).parent / "data" / "bank"
ADMIN = Actor.system("test-bank")


def fixture(name: str) -> Path:
    return DATA / name


# --------------------------------------------------------------------------- OFX parsing


@pytest.mark.parametrize(("name", "account", "currency", "count_", "balance", "payees"), [
    ("ofxparse_bank_medium.ofx", "160000100:12300 000012345678", "CAD", 3, 38_234,
     ["MCDONALD'S #112", "Joe's Bald Hairstyles", "CONNIE'S HAIR D"]),
    ("ofxparse_checking.ofx", "5472369148:1452687~7", "USD", 3, 10_099,
     ["DIVIDEND EARNED FOR PERIOD OF 03", "AUTOMATIC WITHDRAWAL, ELECTRIC BILL",
      "RETURNED CHECK FEE, CHECK # 319"]),
    ("ofxparse_suncorp.ofx", "SUNCORP:123456789", "AUD", 1, 123_412,
     ["EFTPOS WDL HANDYWAY ALDI STORE"]),
    ("ofxparse_anzcc.ofx", "1234123412341234", "AUD", 1, -12_345, [None]),
])
def test_real_ofx_files_parse_with_counts_balances_and_payees(name, account, currency, count_,
                                                               balance, payees):
    """SGML 1.02 (one line; indented) and XML 2.x bank and card statements from four banks."""
    (st,), errors, notes = parse_ofx(fixture(name).read_bytes())
    assert (errors, notes) == ([], [])
    assert (st.account, st.currency, len(st.lines), st.ledger_balance_cents) == (
        account, currency, count_, balance)
    assert [ln.payee for ln in st.lines] == payees


def test_ofx_values_match_what_ofxparse_expects():
    """bank_medium: dates as the bank wrote them, amounts, FITIDs and memos of ofxparse's test."""
    (st,), _, _ = parse_ofx(fixture("ofxparse_bank_medium.ofx").read_bytes())
    assert [(ln.posted_on, ln.amount_cents) for ln in st.lines] == [
        (date(2009, 4, 1), -660), (date(2009, 4, 2), -31_667), (date(2009, 4, 3), -2_200)]
    assert st.lines[0].fitid == "0000123456782009040100001"
    assert st.lines[0].memo == "POS MERCHANDISE;MCDONALD'S #112"
    assert st.total_cents == -34_527
    assert st.as_dict()["implied_opening_balance_cents"] == 38_234 + 34_527
    (cc,), _, _ = parse_ofx(fixture("ofxparse_anzcc.ofx").read_bytes())
    assert (cc.lines[0].memo, cc.lines[0].posted_on) == ("SOME MEMO", date(2017, 5, 8))


def test_ofx_with_two_accounts_and_no_transactions():
    """multiple_accounts2: two statements, ledger balances 111 and 222, no lines."""
    sts, errors, _ = parse_ofx(fixture("ofxparse_multiple_accounts2.ofx").read_bytes())
    assert errors == []
    assert [(s.account, s.ledger_balance_cents, len(s.lines)) for s in sts] == [
        ("123:9100", 11_100, 0), ("123:9200", 22_200, 0)]


def test_malformed_ofx_rows_are_reported_with_line_and_field():
    """No header is tolerated; missing, blank and impossible dates and `$` amounts are named."""
    _, errors, _ = parse_ofx(fixture("ofxparse_fail_nice_date_missing.ofx").read_bytes())
    assert [(e.line, e.column) for e in errors] == [(33, "DTPOSTED"), (40, "DTPOSTED"),
                                                    (48, "DTPOSTED")]
    assert "day is out of range" in errors[2].reason
    _, errors, _ = parse_ofx(fixture("ofxparse_fail_nice_decimal_error.ofx").read_bytes())
    assert {(e.line, e.column) for e in errors} == {(34, "DTPOSTED"), (34, "TRNAMT")}
    assert "'$120'" in next(e.reason for e in errors if e.column == "TRNAMT")
    (st,), errors, notes = parse_ofx(fixture("ofxparse_fail_nice_empty_balance.ofx").read_bytes())
    assert errors == [] and len(st.lines) == 1 and st.ledger_balance_cents is None
    assert "balance" in notes[0]


def test_unreadable_files_raise_a_clear_error():
    """Text that is no OFX at all, or a truncated file, is one clear file-level error."""
    with pytest.raises(ImportFileError, match="no <OFX>"):
        parse_ofx(b"hello, this is not a bank file")
    truncated = fixture("ofxparse_suncorp.ofx").read_bytes()[:900]
    with pytest.raises(ImportFileError, match="OFX"):
        parse_ofx(truncated)


# --------------------------------------------------------------------------- importing


def test_ofx_import_is_idempotent_and_audited(services):
    """Importing SGML and XML files stores their lines; importing them again adds nothing."""
    first = import_bank(services, ADMIN, fixture("ofxparse_bank_medium.ofx"))
    second = import_bank(services, ADMIN, fixture("ofxparse_suncorp.ofx"), account="Suncorp")
    assert (first.imported, second.imported) == (3, 1)
    assert first.extra["statements"][0]["ledger_balance_cents"] == 38_234
    again = import_bank(services, ADMIN, fixture("ofxparse_bank_medium.ofx"))
    assert (again.imported, again.skipped_existing) == (0, 3)
    with services.session() as s:
        rows = all_rows(s, BankTransaction, BankTransaction.id)
        assert [(r.bank_account, r.currency) for r in rows][-1] == ("Suncorp", "AUD")
        assert sum(r.amount_cents for r in rows if r.currency == "CAD") == -34_527
        assert count(s, AuditLog, action="import.bank") == 2


@pytest.mark.parametrize("name", ["derived_bank_medium_one_bad_amount.ofx",
                                  "ofxparse_fail_nice_date_missing.ofx",
                                  "ofxparse_fail_nice_decimal_error.ofx"])
def test_malformed_ofx_imports_nothing(services, name):
    """A file with a bad transaction next to good ones writes none of them."""
    report = import_bank(services, ADMIN, fixture(name))
    assert report.rejected and report.imported == 0
    with services.session() as s:
        assert count(s, BankTransaction) == 0


def test_ofx_import_checks_role_and_multiple_account_naming(services):
    """Staff cannot import; --account cannot name a file that holds two accounts."""
    with services.session() as s:
        build_space(s, services.settings.knowledge_path)
    with pytest.raises(NotAuthorized):
        import_bank(services, Actor("USTAFF", "T1"), fixture("ofxparse_suncorp.ofx"))
    with pytest.raises(ImportFileError, match="2 accounts"):
        import_bank(services, ADMIN, fixture("ofxparse_multiple_accounts2.ofx"), account="X")


CSV_STATEMENT = """\ufeffDetails,Posting Date,Description,Debit,Credit,Balance,Check or Slip #
DEBIT,03/18/2026,Rent March,"2,680.89",,"3,409.86",
CREDIT,03/15/2026,STRIPE PAYOUT,,"2,590.73","6,090.75",
DEBIT,03/14/2026,COFFEE,(150.00),,"3,500.02",
DEBIT,03/14/2026,COFFEE,150.00,,"3,650.02",
CREDIT,03/05/2026,TAX REFUND,,110.00,"3,800.02",
,,,,,,
"""


def test_csv_statement_with_a_mapping_is_idempotent(services, tmp_path):
    """Debit/credit columns, US dates, parentheses and identical rows get stable ids."""
    mapping_file = tmp_path / "bank.yaml"
    mapping_file.write_text("date: Posting Date\ndebit: Debit\ncredit: Credit\n"
                            "payee: Description\nbalance: Balance\ndate_format: '%m/%d/%Y'\n")
    mapping = CsvMapping.from_options([str(mapping_file)])
    data = CSV_STATEMENT.encode()
    report = import_bank(services, ADMIN, data, account="Chase", format="csv", mapping=mapping)
    assert report.ok and report.imported == 5, report.rejected
    st = report.extra["statements"][0]
    assert (st["ledger_balance_cents"], st["balance_as_of"]) == (340_986, "2026-03-18")
    assert st["total_cents"] == -268_089 + 259_073 - 15_000 - 15_000 + 11_000
    assert report.warnings == []
    again = import_bank(services, ADMIN, data, account="Chase", format="csv", mapping=mapping)
    assert (again.imported, again.skipped_existing) == (0, 5)
    with services.session() as s:
        coffee = [r for r in all_rows(s, BankTransaction, BankTransaction.id)
                  if r.payee == "COFFEE"]
        assert len({r.fitid for r in coffee}) == 2
        assert [r.amount_cents for r in coffee] == [-15_000, -15_000]


def test_csv_statement_bad_rows_and_bad_mappings(services):
    """Bad dates and amounts are reported by line and column; a wrong mapping is one error."""
    mapping = CsvMapping.from_options(["date=Date", "amount=Amount", "payee=Payee", "id=Ref"])
    data = (b"Date,Amount,Payee,Ref\n2026-03-01,10.00,A,r1\n2026-02-30,5,B,r2\n"
            b"2026-03-02,abc,C,r3\n2026-03-03,1,D,r1\n")
    report = import_bank(services, ADMIN, data, account="Ops", format="csv", mapping=mapping)
    assert [(e.line, e.column) for e in report.rejected] == [(3, "Date"), (4, "Amount"),
                                                             (5, "Ref")]
    with services.session() as s:
        assert count(s, BankTransaction) == 0
    with pytest.raises(ImportFileError, match="'Amount'"):
        import_bank(services, ADMIN, b"Date,Value\n2026-03-01,1\n", account="Ops", format="csv",
                    mapping=mapping)
    with pytest.raises(ImportFileError, match="amount column"):
        CsvMapping.from_options(["date=Date"])
    with pytest.raises(ImportFileError, match="--account"):
        import_bank(services, ADMIN, data, format="csv", mapping=mapping)


# --------------------------------------------------------------------------- reconciliation


@pytest.fixture
def books(services):
    """Uptown in Los Angeles, one member, a vendor with a paid bill and a posted expense."""
    with services.session() as s:
        build_space(s, services.settings.knowledge_path)
        s.add(Location(code="UT", name="Uptown", timezone="America/Los_Angeles"))
        s.flush()
        ut = s.execute(select(Location).where(Location.code == "UT")).scalar_one()
        vendor = Vendor(name="Pacific Power", normalized_name="pacific power")
        s.add(vendor)
        s.flush()
        s.add(Bill(vendor_id=vendor.id, location_id=ut.id, number="PP-1",
                   bill_date=date(2026, 2, 20), amount_cents=41_200, account_code="5100",
                   status="paid", payment_method="ach", paid_on=date(2026, 3, 2)))
        s.add(Expense(vendor_name="Office Depot", location_id=ut.id,
                      expense_date=date(2026, 3, 3), amount_cents=8_999, status="posted",
                      payment_method="card"))
    members = ("code,name,email,home_location\nACME,Acme Design,billing@acme.example,UT\n"
               "PRI,Priya Shah,priya@example.com,UT\n")
    import_members(services, ADMIN, members.encode())
    return ut.id


STRIPE_HEAD = "id,Created (UTC),Amount,Currency,Status,Customer Email,Fee\n"


def test_reconcile_groups_card_payouts_by_local_day_and_posts_the_payout(services, books):
    """Charges at 20:00Z Feb 28 and 02:00Z Mar 1 are one Feb 28 batch in Los Angeles."""
    charges = (STRIPE_HEAD
               + "ch_1,2026-02-28 20:00:00,100.00,usd,Paid,billing@acme.example,3.20\n"
               + "ch_2,2026-03-01 02:00:00,200.00,usd,Paid,priya@example.com,6.10\n"
               + "ch_3,2026-03-01 18:00:00,50.00,usd,Paid,priya@example.com,1.75\n")
    assert import_payments(services, ADMIN, charges.encode(), format="stripe").imported == 3
    ach = ("external_id,member,date,amount,method\n"
           "ach-1,ACME,2026-03-01,750.00,ach\n")
    assert import_payments(services, ADMIN, ach.encode()).imported == 1
    statement = ("Date,Amount,Payee\n"
                 "2026-03-02,290.70,STRIPE PAYOUT\n"  # 300.00 - 9.30 fees, Feb 28 batch
                 "2026-03-02,750.00,ACME DESIGN ACH\n"
                 "2026-03-02,-412.00,PACIFIC POWER\n"
                 "2026-03-04,-89.99,OFFICE DEPOT\n"
                 "2026-03-05,-15.00,BANK FEE\n")
    mapping = CsvMapping(date="Date", amount="Amount", payee="Payee")
    import_bank(services, ADMIN, statement.encode(), account="Ops", format="csv",
                mapping=mapping)
    report = reconcile(services, ADMIN, "Ops", date(2026, 3, 1), date(2026, 3, 31))
    assert sorted((m.payee, m.matched_type) for m in report.matched) == [
        ("ACME DESIGN ACH", "payment"), ("OFFICE DEPOT", "expense"),
        ("PACIFIC POWER", "bill"), ("STRIPE PAYOUT", "payout")]
    assert [b["payee"] for b in report.unmatched_bank] == ["BANK FEE"]
    assert report.unmatched_book == []
    payout = next(m for m in report.matched if m.matched_type == "payout")
    assert payout.book_date == date(2026, 2, 28)
    with services.session() as s:
        entry = s.get(JournalEntry, payout.matched_id)
        assert entry.idempotency_key == f"payout:{books}:2026-02-28"
        assert ledger.balance(s, "1050") == 5_000  # the Mar 1 charge is still in transit
        assert ledger.balance(s, "6600") == 930
        assert ledger.trial_balance(s).is_balanced
        line = s.execute(select(BankTransaction).where(
            BankTransaction.payee == "ACME DESIGN ACH")).scalar_one()
        ach_payment = s.execute(select(Payment).where(Payment.external_id == "ach-1")).scalar_one()
        assert (line.matched_type, line.matched_id) == ("payment", ach_payment.id)
    assert "*Bank reconciliation — Ops*" in report.summary_text
    assert "BANK FEE" in report.summary_text and "$50.00" in report.summary_text
    again = reconcile(services, ADMIN, "Ops", date(2026, 3, 1), date(2026, 3, 31))
    assert (again.newly_matched, len(again.matched)) == (0, 4)
    with services.session() as s:
        assert count(s, JournalEntry, source_type="payout") == 1


def test_reconcile_lists_book_items_missing_from_the_bank_and_respects_the_window(services,
                                                                                  books):
    """A payment the bank never shows is unmatched in the books; a bank line before the book
    date does not match it."""
    ach = ("external_id,member,date,amount,method\n"
           "ach-1,ACME,2026-03-10,500.00,ach\n"
           "chk-1,PRI,2026-03-12,120.00,check\n")
    import_payments(services, ADMIN, ach.encode())
    statement = "Date,Amount,Payee\n2026-03-09,500.00,EARLY\n2026-03-20,120.00,LATE CHECK\n"
    import_bank(services, ADMIN, statement.encode(), account="Ops", format="csv",
                mapping=CsvMapping(date="Date", amount="Amount", payee="Payee"))
    report = reconcile(services, ADMIN, "Ops", date(2026, 3, 1), date(2026, 3, 31),
                       window_days=5)
    assert report.matched == []
    assert {b["payee"] for b in report.unmatched_bank} == {"EARLY", "LATE CHECK"}
    assert [(b.on, b.type, b.amount_cents) for b in report.unmatched_book] == [
        (date(2026, 3, 2), "bill", -41_200), (date(2026, 3, 3), "expense", -8_999),
        (date(2026, 3, 10), "payment", 50_000), (date(2026, 3, 12), "payment", 12_000)]
    wide = reconcile(services, ADMIN, "Ops", date(2026, 3, 1), date(2026, 3, 31),
                     window_days=10, dry_run=True)
    assert [m.payee for m in wide.matched] == ["LATE CHECK"]
    with services.session() as s:
        assert count(s, BankTransaction, matched_type="payment") == 0  # dry run wrote nothing


def test_reconcile_matches_demo_style_payout_entries(services, books):
    """A payout already posted in the ledger (Dr 1000 / Cr 1050) matches its bank credit."""
    with services.session() as s:
        ledger.post_entry(s, EntryDraft(date(2026, 3, 3), "Card payout — Uptown", [
            Leg("1000", 97_000, books), Leg("6600", 3_000, books), Leg("1050", -100_000, books)],
            source_type="payout"), actor="test")
    import_bank(services, ADMIN, b"Date,Amount\n2026-03-03,970.00\n", account="Ops",
                format="csv", mapping=CsvMapping(date="Date", amount="Amount"))
    report = reconcile(services, ADMIN, "Ops")
    assert [(m.matched_type, m.amount_cents) for m in report.matched] == [("payout", 97_000)]
    with pytest.raises(ValueError, match="no bank lines"):
        reconcile(services, ADMIN, "Nope")


@pytest.mark.slow
def test_cli_import_bank_and_reconcile(tmp_path, monkeypatch):
    """`deskbooks import bank` and `deskbooks reconcile --json` work end to end."""
    from bot.cli import app

    runner = CliRunner()
    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["import", "bank", str(fixture("ofxparse_checking.ofx")),
                                 "--account", "Checking"])
    assert result.exit_code == 0, result.output
    assert "3 transactions" in result.stdout and "ledger balance $100.99" in result.stdout
    bad = runner.invoke(app, ["import", "bank",
                              str(fixture("derived_bank_medium_one_bad_amount.ofx"))])
    assert bad.exit_code == 2 and "TRNAMT" in bad.stdout
    csv_file = tmp_path / "s.csv"
    csv_file.write_text("When,Value,Who\n03/02/2026,12.50,X\n")
    result = runner.invoke(app, ["import", "bank", str(csv_file), "--account", "Ops",
                                 "--mapping", "date=When", "--mapping", "amount=Value",
                                 "--mapping", "payee=Who", "--date-format", "%m/%d/%Y"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["reconcile", "--account", "Checking", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["unmatched_bank"]) == 3 and data["matched"] == []
    result = runner.invoke(app, ["reconcile", "--account", "Missing"])
    assert result.exit_code == 2 and "no bank lines" in result.stderr


def test_headerless_ofx_with_blank_balance_imports_with_a_warning(services):
    """empty_balance.ofx (no OFX header, blank LEDGERBAL) imports its one line and warns."""
    report = import_bank(services, ADMIN, fixture("ofxparse_fail_nice_empty_balance.ofx"))
    assert report.ok and report.imported == 1
    assert report.extra["statements"][0]["ledger_balance_cents"] is None
    assert any("balance" in w for w in report.warnings)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
       kind=st.sampled_from(["csv", "ofx"]))
def test_random_bank_files_give_a_report_or_a_clear_error(sqlite_services, data, kind):
    """Random bytes as a CSV (with a mapping) or OFX statement never crash the importer."""
    mapping = CsvMapping(date="Date", amount="Amount", payee="Payee")
    try:
        report = import_bank(sqlite_services, ADMIN, b"Date,Amount,Payee\n" + data
                             if kind == "csv" else data, account="Fuzz", format=kind,
                             mapping=mapping, dry_run=True)
    except ImportFileError as exc:
        assert str(exc)
    else:
        assert report.rows >= len({e.line for e in report.rejected})
        assert report.imported == 0 or report.ok
