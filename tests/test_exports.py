"""QuickBooks Online and Xero journal exports, the invoices CSV, and their round trips."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from finance import ledger
from finance.exports import (
    QBO_COLUMNS,
    XERO_COLUMNS,
    ExportError,
    export_invoices,
    export_quickbooks,
    export_xero,
)
from finance.export_beancount import beancount_account
from finance.ledger import EntryDraft, Leg
from finance.models import Account, Member, Vendor
from tests.helpers import add_location
from tests.test_beancount_export import bean_check


def _books(s) -> dict[str, int]:
    """A small ledger with a member on A/R, a vendor on A/P, a reversal and a tricky memo."""
    dt = add_location(s, "DT")
    rs = add_location(s, "RS", "America/Chicago")
    member = Member(code="M-ACME", kind="company", name="Acme Design")
    vendor = Vendor(name="Hudson Cleaning", normalized_name="hudson cleaning")
    s.add_all([member, vendor])
    s.flush()
    ledger.post_entry(s, EntryDraft(date(2026, 3, 1), "Invoice INV-1, March", [
        Leg("1100", 10_888, dt, member_id=member.id), Leg("4000", -10_000, dt),
        Leg("2100", -888, dt)]), actor="U1")
    pay = ledger.post_entry(s, EntryDraft(date(2026, 3, 4), "=HYPERLINK(\"x\") card payment", [
        Leg("1050", 10_888, dt), Leg("1100", -10_888, dt, member_id=member.id)]), actor="U1")
    ledger.post_entry(s, EntryDraft(date(2026, 3, 6), "Cleaning\nRiverside", [
        Leg("5300", 45_000, rs), Leg("2000", -45_000, rs, vendor_id=vendor.id)]), actor="U1")
    ledger.reverse_entry(s, pay.id, on_date=date(2026, 3, 7), actor="U1", reason="chargeback")
    return {r.code: r.balance_cents for r in ledger.trial_balance(s).rows}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _cents(text: str) -> int:
    return int(Decimal(text) * 100) if text else 0


def test_quickbooks_layout_dates_names_and_balance(services, tmp_path):
    """QBO rows use the template's columns, MM/DD/YYYY, names on A/R and A/P, and balance."""
    out = tmp_path / "qbo.csv"
    with services.session() as s:
        tb = _books(s)
        names = {a.name: a.code for a in s.execute(select(Account)).scalars()}
        report = export_quickbooks(s, out)
    assert report.entries == 4 and report.lines == 9
    rows = _read(out)
    assert tuple(rows[0]) == QBO_COLUMNS
    assert rows[0]["Journal Date"] == "03/01/2026"
    by_journal: dict[str, int] = defaultdict(int)
    by_account: dict[str, int] = defaultdict(int)
    for row in rows:
        assert bool(row["Debits"]) != bool(row["Credits"]), row
        amount = _cents(row["Debits"]) - _cents(row["Credits"])
        by_journal[row["Journal No"]] += amount
        by_account[names[row["Account Name"]]] += amount
        if names[row["Account Name"]] in ("1100", "2000"):
            assert row["Name"] in ("Acme Design", "Hudson Cleaning")
    assert set(by_journal.values()) == {0}
    assert {k: v for k, v in by_account.items() if v} == {k: v for k, v in tb.items() if v}
    assert all(not r["Description"].startswith("=") for r in rows)
    assert {r["Location"] for r in rows} == {"Downtown", "RS"}


def test_xero_layout_signs_and_split_without_breaking_a_journal(services, tmp_path):
    """Xero rows carry codes, dd/mm/yyyy and signed amounts; files split at the line limit."""
    out = tmp_path / "xero.csv"
    with services.session() as s:
        tb = _books(s)
        report = export_xero(s, out, max_lines=4)
    assert len(report.files) == 3  # 3 + 2 | 3 | ... never a journal across two files
    totals: dict[str, int] = defaultdict(int)
    seen = 0
    for path in report.files:
        rows = _read(path)
        assert tuple(rows[0]) == XERO_COLUMNS and len(rows) <= 4
        journals: dict[str, int] = defaultdict(int)
        for row in rows:
            journals[(row["*Narration"], row["*Date"])] += _cents(row["*Amount"])
            totals[row["*AccountCode"]] += _cents(row["*Amount"])
            assert row["*TaxRate"] == "Tax Exempt" and row["TrackingName1"] == "Location"
            seen += 1
        assert set(journals.values()) == {0}
    assert seen == report.lines == 9
    assert _read(report.files[0])[0]["*Date"] == "01/03/2026"
    assert {k: v for k, v in totals.items() if v} == {k: v for k, v in tb.items() if v}


def test_xero_refuses_a_journal_longer_than_one_file(services, tmp_path):
    """A journal that cannot fit Xero's per-file limit is an error, not a split journal."""
    with services.session() as s:
        _books(s)
        with pytest.raises(ExportError, match="at most 2 lines"):
            export_xero(s, tmp_path / "x.csv", max_lines=2)
    assert not list(tmp_path.glob("x*.csv"))


def test_mixed_currencies_are_refused(services, tmp_path):
    """Journal imports take one home currency; a second currency is a clear error."""
    with services.session() as s:
        dt = add_location(s, "DT")
        ledger.post_entry(s, EntryDraft(date(2026, 3, 1), "usd", [
            Leg("1000", 100, dt), Leg("3000", -100, dt)]), actor="U1")
        ledger.post_entry(s, EntryDraft(date(2026, 3, 2), "eur", [
            Leg("1000", 100, dt, currency="EUR"), Leg("3000", -100, dt, currency="EUR")]),
            actor="U1")
        with pytest.raises(ExportError, match="more than one currency"):
            export_quickbooks(s, tmp_path / "q.csv")
    assert not (tmp_path / "q.csv").exists()


def test_date_range_limits_the_export(services, tmp_path):
    """Only entries dated inside the range are exported."""
    with services.session() as s:
        _books(s)
        report = export_quickbooks(s, tmp_path / "q.csv", start=date(2026, 3, 4),
                                   end=date(2026, 3, 6))
    assert report.entries == 2
    assert {r["Journal Date"] for r in _read(tmp_path / "q.csv")} == {"03/04/2026", "03/06/2026"}


def _qbo_to_beancount(path: Path, accounts: dict[str, tuple[str, str]], out: Path) -> None:
    """Rebuild Beancount text from the QBO file alone (what an importer would see)."""
    rows = _read(path)
    lines = []
    for code, (name, kind) in sorted(accounts.items()):
        lines.append(f"2000-01-01 open {beancount_account(code, name, kind)}")
    by_name = {name: code for code, (name, _k) in accounts.items()}
    journals: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        journals[row["Journal No"]].append(row)
    for number, legs in journals.items():
        day = datetime.strptime(legs[0]["Journal Date"], "%m/%d/%Y").date()
        lines.append(f'{day} * "JE {number}"')
        for leg in legs:
            code = by_name[leg["Account Name"]]
            name, kind = accounts[code]
            amount = Decimal(leg["Debits"] or "0") - Decimal(leg["Credits"] or "0")
            lines.append(f"  {beancount_account(code, name, kind)}  {amount:.2f} USD")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_demo_round_trip_through_quickbooks_csv_passes_bean_check(sqlite_services, tmp_path):
    """The demo ledger exported to QBO CSV, rebuilt as Beancount, checks clean and balances."""
    from finance.demo import seed_demo

    seed_demo(sqlite_services, members=40, months=6, through="2026-10")
    with sqlite_services.session() as s:
        report = export_quickbooks(s, tmp_path / "qbo.csv")
        accounts = {a.code: (a.name, a.type) for a in s.execute(select(Account)).scalars()}
        tb = {r.code: r.balance_cents for r in ledger.trial_balance(s).rows}
    assert report.entries > 100
    _qbo_to_beancount(tmp_path / "qbo.csv", accounts, tmp_path / "rt.beancount")
    result = bean_check(tmp_path / "rt.beancount")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    totals: dict[str, int] = defaultdict(int)
    names = {name: code for code, (name, _k) in accounts.items()}
    for row in _read(tmp_path / "qbo.csv"):
        totals[names[row["Account Name"]]] += _cents(row["Debits"]) - _cents(row["Credits"])
    assert {k: v for k, v in totals.items() if v} == {k: v for k, v in tb.items() if v}


def test_invoices_csv_lists_issued_invoices_with_balance(services, tmp_path):
    """Issued invoices appear with dollars and the balance still due; drafts do not."""
    from finance.authz import Actor
    from finance.billing import BillingEngine, BillingPolicy
    from tests.helpers import add_member, build_space

    engine = BillingEngine(services.chart, BillingPolicy())
    actor = Actor.system("test")
    with services.session() as s:
        space = build_space(s, services.settings.knowledge_path)
        add_member(s, "M-1", "Bluebird Labs", plan_id=space["plans"]["ded"],
                   location_id=space["location"], start=date(2026, 1, 1), price_cents=60_000)
    with services.session() as s:
        run = engine.run(s, "2026-02", actor=actor, dry_run=False)
        engine.approve(s, run.invoice_ids, actor=actor)
        engine.issue(s, run.invoice_ids, actor=actor, on=date(2026, 2, 1))
        engine.run(s, "2026-03", actor=actor, dry_run=False)  # drafts only
        report = export_invoices(s, tmp_path / "inv.csv")
    rows = _read(tmp_path / "inv.csv")
    assert report.entries == len(rows) == 1
    row = rows[0]
    assert row["member_name"] == "Bluebird Labs" and row["period"] == "2026-02"
    assert row["status"] == "open" and row["balance_due"] == row["total"]
    assert Decimal(row["total"]) >= Decimal("600.00")


def test_cli_exports_and_bad_range(tmp_path, monkeypatch):
    """`deskbooks export quickbooks|xero` write files; a backwards range is one clear line."""
    from bot.cli import app

    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["export", "quickbooks", "--out", str(tmp_path / "q.csv")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", "xero", "--out", str(tmp_path / "x.csv"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.csv").read_text().startswith("*Narration,")
    result = runner.invoke(app, ["export", "invoices", "--out", str(tmp_path / "i.csv"),
                                 "--start", "2026-03-02", "--end", "2026-03-01"])
    assert result.exit_code == 2 and "before --start" in result.output
