"""The 1099-NEC contractor report and the sales tax report."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from finance.authz import Actor
from finance.billing import BillingEngine, BillingPolicy
from finance.models import Bill, Expense, Invoice, InvoiceLine, Vendor
from finance.receivables import issue_credit_note, void_invoice
from finance.reports import (
    ReportError,
    load_1099_policy,
    report_1099,
    sales_tax_report,
)
from tests.helpers import add_location


def _vendor(s, name: str, *, tin: str | None = None, contractor: bool = True) -> int:
    v = Vendor(name=name, normalized_name=name.lower(), tin=tin, is_contractor=contractor)
    s.add(v)
    s.flush()
    return v.id


def _paid_bill(s, vendor_id: int, loc: int, number: str, cents: int, paid: date,
               method: str) -> None:
    s.add(Bill(vendor_id=vendor_id, location_id=loc, number=number, bill_date=paid,
               amount_cents=cents, account_code="6400", status="paid", paid_on=paid,
               payment_method=method))


def _contractors(s) -> None:
    loc = add_location(s, "DT")
    ada = _vendor(s, "Ada Electric", tin="12-3456789")
    bo = _vendor(s, "Bo Handyman")
    cy = _vendor(s, "Cy Design")
    di = _vendor(s, "Di Plumbing", tin="98-7654321")
    office = _vendor(s, "Office Depot", contractor=False)
    _paid_bill(s, ada, loc, "A1", 150_000, date(2026, 2, 1), "check")
    _paid_bill(s, ada, loc, "A2", 100_000, date(2026, 6, 1), "ach")
    _paid_bill(s, ada, loc, "A0", 90_000, date(2025, 12, 31), "check")  # other year
    _paid_bill(s, bo, loc, "B1", 210_000, date(2026, 5, 5), "check")
    _paid_bill(s, cy, loc, "C1", 500_000, date(2026, 3, 3), "card")  # 1099-K, not NEC
    _paid_bill(s, di, loc, "D1", 70_000, date(2026, 4, 4), "check")
    _paid_bill(s, di, loc, "D0", 70_000, date(2025, 4, 4), "check")
    _paid_bill(s, office, loc, "O1", 900_000, date(2026, 4, 4), "check")
    s.add(Bill(vendor_id=di, location_id=loc, number="D2", bill_date=date(2026, 7, 1),
               amount_cents=999_999, account_code="6400", status="approved"))  # unpaid
    s.add(Expense(vendor_id=di, vendor_name="Di Plumbing", location_id=loc,
                  expense_date=date(2026, 8, 8), amount_cents=40_000, payment_method="cash",
                  status="posted", account_code="6400"))


def test_1099_threshold_by_year_card_excluded_and_missing_tin(services):
    """2026 uses $2,000, 2025 uses $600; card payments are excluded; a TIN-less payee is flagged."""
    policy = load_1099_policy(services.settings.knowledge_path)
    assert policy.threshold_cents(2025) == 60_000
    assert policy.threshold_cents(2026) == 200_000
    assert policy.threshold_cents(2031) == 200_000  # latest row until a new one is added
    with services.session() as s:
        _contractors(s)
        rep = report_1099(s, 2026, policy)
        old = report_1099(s, 2025, policy)
    rows = {c.name: c for c in rep.contractors}
    assert set(rows) == {"Ada Electric", "Bo Handyman", "Cy Design", "Di Plumbing"}
    assert rows["Ada Electric"].paid_cents == 250_000 and rows["Ada Electric"].reportable
    assert rows["Bo Handyman"].reportable and rows["Bo Handyman"].missing_tin
    assert rows["Cy Design"].paid_cents == 0 and rows["Cy Design"].card_cents == 500_000
    assert not rows["Cy Design"].reportable
    assert rows["Di Plumbing"].paid_cents == 110_000 and not rows["Di Plumbing"].reportable
    assert [c.name for c in rep.missing_tin] == ["Bo Handyman"]
    old_rows = {c.name: c for c in old.contractors}
    assert old.threshold_cents == 60_000
    assert old_rows["Ada Electric"].reportable and old_rows["Di Plumbing"].reportable


def test_1099_bad_year_and_bad_policy_file(services, tmp_path):
    """An absurd year and a broken policy file are clear errors."""
    policy = load_1099_policy(services.settings.knowledge_path)
    with services.session() as s, pytest.raises(ReportError, match="year must be"):
        report_1099(s, 20026, policy)
    (tmp_path / "form_1099.yaml").write_text("thresholds: [{from_year: 2026, amount: lots}]")
    with pytest.raises(ReportError, match="not a valid 1099 policy"):
        load_1099_policy(tmp_path)


def test_sales_tax_report_agrees_with_the_ledger_after_credits_and_voids(services):
    """By location: tax charged − credit notes − voids equals the movement on 2100."""
    from finance.demo import seed_demo

    seed_demo(services, members=40, months=6, through="2026-10")
    actor = Actor.system("test")
    engine = BillingEngine(services.chart, BillingPolicy())
    start, end = date(2026, 5, 1), date(2026, 11, 30)
    with services.session() as s:  # November's invoices stay unpaid: one can be voided
        run = engine.run(s, "2026-11", actor=actor, dry_run=False)
        engine.approve(s, run.invoice_ids, actor=actor)
        engine.issue(s, run.invoice_ids, actor=actor, on=date(2026, 11, 1))
    with services.session() as s:
        taxed = s.execute(
            select(Invoice).where(Invoice.tax_cents > 0, Invoice.number.is_not(None),
                                  Invoice.issue_date >= start)
            .order_by(Invoice.id)).scalars().all()
        unpaid = [inv for inv in taxed if inv.status == "open" and not inv.amount_paid_cents
                  and not inv.credit_applied_cents]
        assert taxed and unpaid, "the demo and November's run should leave taxed invoices"
        voided = unpaid[-1]
        credited = next(inv for inv in taxed if inv.id != voided.id)
        issue_credit_note(s, credited.id, amount_cents=credited.subtotal_cents // 2,
                          reason="coffee machine broken", on=end, actor=actor)
        void_invoice(s, voided.id, reason="billed twice", on=end, actor=actor)
    with services.session() as s:
        rep = sales_tax_report(s, start, end)
        line_tax = s.execute(
            select(func.sum(InvoiceLine.tax_cents)).join(Invoice)
            .where(Invoice.number.is_not(None), Invoice.issue_date >= start,
                   Invoice.issue_date <= end)).scalar_one()
    assert sum(r.tax_cents for r in rep.rows) == line_tax > 0
    assert sum(loc.tax_refunded_cents for loc in rep.locations) > 0
    assert sum(loc.tax_voided_cents for loc in rep.locations) == voided.tax_cents
    for loc in rep.locations:
        assert loc.net_tax_cents == loc.ledger_movement_cents, loc
    assert sum(loc.remitted_cents for loc in rep.locations) > 0  # shown apart, not netted
    assert {r.line_kind for r in rep.rows} >= {"meeting_room"}


def test_sales_tax_location_filter_and_errors(services):
    """A location narrows the report; unknown locations and reversed ranges are errors."""
    with services.session() as s:
        add_location(s, "DT")
        add_location(s, "RS", "America/Chicago")
        rep = sales_tax_report(s, date(2026, 1, 1), date(2026, 1, 31), location="downtown")
        assert [loc.location for loc in rep.locations] == ["Downtown"]
        with pytest.raises(ReportError, match="unknown location 'Mars'"):
            sales_tax_report(s, date(2026, 1, 1), date(2026, 1, 31), location="Mars")
        with pytest.raises(ReportError, match="before it starts"):
            sales_tax_report(s, date(2026, 2, 1), date(2026, 1, 31))


def test_cli_reports(tmp_path, monkeypatch):
    """`deskbooks report 1099` and `report sales-tax` run, write CSV and map errors to exit 2."""
    from bot.cli import app

    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["report", "1099", "--year", "2026", "--json",
                                 "--out", str(tmp_path / "1099.csv")])
    assert result.exit_code == 0, result.output
    assert '"threshold_cents": 200000' in result.output
    result = runner.invoke(app, ["report", "sales-tax", "--start", "2026-01-01",
                                 "--end", "2026-03-31"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", "sales-tax", "--start", "2026-01-01",
                                 "--end", "2026-03-31", "--location", "Nowhere"])
    assert result.exit_code == 2 and "unknown location" in result.output
