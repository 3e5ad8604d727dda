"""Month-end close: the checklist reports what blocks, and locks only when all pass."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from finance import ledger
from finance.authz import Actor, NotAuthorized
from finance.billing import BillingEngine, BillingPolicy
from finance.close import close_period
from finance.ledger import EntryDraft, Leg
from finance.models import Anomaly, BankTransaction, Expense
from tests.helpers import add_member, build_space

OPERATOR = Actor.system("test")


@pytest.fixture
def space(services):
    with services.session() as s:
        built = build_space(s, services.settings.knowledge_path)
        add_member(s, "M-1", "Bluebird Labs", plan_id=built["plans"]["yearly"],
                   location_id=built["location"], start=date(2026, 1, 1), price_cents=600_000)
    return built


def _names(report) -> dict[str, bool]:
    return {c.name: c.passed for c in report.checks}


def test_close_reports_blockers_then_locks_when_clear(services, space):
    """Drafts, a draft receipt, unrecognized deferral, unmatched bank, open anomaly block it."""
    engine = BillingEngine(services.chart, BillingPolicy())
    loc = space["location"]
    with services.session() as s:
        run = engine.run(s, "2026-01", actor=OPERATOR, dry_run=False)
        s.add(Expense(vendor_name="Staples", location_id=loc, expense_date=date(2026, 2, 3),
                      amount_cents=1_200, status="draft"))
        s.add(BankTransaction(bank_account="chk", fitid="1", posted_on=date(2026, 2, 4),
                              amount_cents=-1_200, payee="Staples"))
        s.add(Anomaly(kind="duplicate_charge", fingerprint="x", severity="low", reason="r",
                      occurred_on=date(2026, 2, 5), location_id=loc))
    report = close_period(services, OPERATOR, "2026-02")
    assert not report.ready and not report.locked
    assert _names(report) == {"drafts issued": True, "receipts categorized": False,
                              "deferred revenue recognized": True, "bank reconciled": False,
                              "anomalies triaged": False}
    with services.session() as s:
        engine.approve(s, run.invoice_ids, actor=OPERATOR)
        engine.issue(s, run.invoice_ids, actor=OPERATOR, on=date(2026, 1, 1))
        for exp in s.execute(select(Expense)).scalars():
            exp.status = "discarded"
        for line in s.execute(select(BankTransaction)).scalars():
            line.matched_type, line.matched_id = "expense", 1
        for row in s.execute(select(Anomaly)).scalars():
            row.status = "dismissed"
    report = close_period(services, OPERATOR, "2026-02")
    assert _names(report)["deferred revenue recognized"] is False  # the yearly plan's February
    from finance.receivables import recognize_revenue

    with services.session() as s:
        recognize_revenue(s, date(2026, 2, 1), actor=OPERATOR)
    report = close_period(services, OPERATOR, "2026-02")
    assert report.ready and report.locked
    with services.session() as s, pytest.raises(ledger.PeriodLocked):
        ledger.post_entry(s, EntryDraft(date(2026, 2, 10), "late", [
            Leg("1000", 100, loc), Leg("3000", -100, loc)]), actor="U1")
    again = close_period(services, OPERATOR, "2026-02")
    assert again.already_locked and not again.locked


def test_close_without_bank_data_needs_an_explicit_waiver(services, space):
    """No statement imported blocks the close unless the bank check is waived (audited)."""
    report = close_period(services, OPERATOR, "2026-03", lock=False)
    assert _names(report)["bank reconciled"] is False
    waived = close_period(services, OPERATOR, "2026-03", skip=frozenset({"bank"}))
    assert waived.locked
    with pytest.raises(ValueError, match="unknown check"):
        close_period(services, OPERATOR, "2026-04", skip=frozenset({"vibes"}))


def test_staff_cannot_close(services, space):
    """Closing a month needs a finance role."""
    with pytest.raises(NotAuthorized):
        close_period(services, Actor("USTAFF", "T1"), "2026-02")
