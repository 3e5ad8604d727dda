"""The tools over KPIs, anomalies, expenses, receipts, bills and the rules knowledge base."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from finance.models import Expense, JournalEntry
from tests.helpers import count
from tests.test_tools import MANAGER, STAFF, TODAY, two_member_space
from tests.test_tools import ctx as base_ctx
from tools import actions
from tools.base import ToolContext, ToolError, invoke


@pytest.fixture
def space(services):
    return two_member_space(services)


def ctx(services, actor=MANAGER, **kw) -> ToolContext:
    """The base context, in the space's time zone and location."""
    return base_ctx(services, actor, timezone="America/New_York", location_id=1, **kw)


def test_lookup_kpi_mrr_and_active_members(services, space):
    """MRR is the two subscriptions' monthly prices; staff may not read KPIs."""
    out = invoke(ctx(services), "lookup_kpi", {"kpi": "mrr", "start": "2026-11-01",
                                               "end": "2026-11-29"})
    assert out.value == 90_000 and out.unit == "cents" and "$900.00" in out.summary
    members = invoke(ctx(services), "lookup_kpi", {"kpi": "active_members",
                                                   "start": "2026-11-01", "end": "2026-11-29",
                                                   "desk_type": "hot_desk"})
    assert members.value == 1
    with pytest.raises(ToolError, match="needs one of these roles"):
        invoke(ctx(services, STAFF), "lookup_kpi", {"kpi": "mrr", "start": "2026-11-01",
                                                    "end": "2026-11-29"})
    with pytest.raises(ToolError, match="Input should be"):
        invoke(ctx(services), "lookup_kpi", {"kpi": "profit", "start": "2026-11-01",
                                             "end": "2026-11-29"})


def test_categorize_tool_uses_rules_and_capex_threshold(services, space):
    """Small coffee is refreshments by rule; a $3,200 chair is capitalized, not supplies."""
    coffee = invoke(ctx(services, STAFF), "categorize_expense",
                    {"vendor": "Starbucks", "amount": 1840})
    assert coffee.account_code == "6000" and coffee.source == "rule"
    chair = invoke(ctx(services, STAFF), "categorize_expense",
                   {"vendor": "Office Depot", "amount": 320_000,
                    "description": "Herman Miller Aeron chair"})
    assert chair.account_code == "1500" and chair.capitalized


def test_bills_listed_and_approval_requested_never_granted(services, space):
    """list_bills shows who a bill waits for; request_bill_approval only asks."""
    from finance import approvals
    from finance.models import SlackUser

    with services.session() as s:
        s.add(SlackUser(team_id="T1", user_id="UGM", name="Gina", role="gm"))
    bill = approvals.create_bill(services, STAFF, approvals.BillDraft(
        vendor="Hudson Cleaning", amount_cents=250_000, number="H-1",
        bill_date=date(2026, 11, 20), account_code="5300", location="DT"))
    listed = invoke(ctx(services), "list_bills", {"status": "pending"})
    assert listed.count == 1 and listed.bills[0].waiting_for
    asked: list[int] = []
    out = invoke(ctx(services, STAFF, notify_bill=asked.append), "request_bill_approval",
                 {"bill_id": bill.id})
    assert out.notified and out.approvers == ["UGM"] and asked == [bill.id]
    with services.session() as s:
        assert approvals.get_bill(s, bill.id).status == "pending"


def test_flag_anomalies_tool_stores_findings_once(services, space):
    """A capex-as-opex expense is found; a rescan reports it again without a new row."""
    with services.session() as s:
        s.add(Expense(vendor_name="Office Depot", location_id=space["location"],
                      expense_date=date(2026, 11, 10), amount_cents=320_000,
                      account_code="6100", description="Herman Miller Aeron chair",
                      status="posted"))
    first = invoke(ctx(services), "flag_anomalies", {"start": "2026-11-01", "end": "2026-11-29"})
    again = invoke(ctx(services), "flag_anomalies", {"start": "2026-11-01", "end": "2026-11-29"})
    assert first.by_kind.get("capex_as_opex") == 1 and first.new >= 1
    assert again.new == 0 and again.found == first.found


def test_scan_receipt_files_a_draft_and_posts_only_on_confirm(services, space, tmp_path):
    """A rendered receipt becomes a draft with a proposal; Confirm posts it once."""
    from tests.test_receipt_images import RECEIPT_ROWS, draw_receipt, encode

    path = tmp_path / "receipt.png"
    path.write_bytes(encode(draw_receipt([("STARBUCKS", None), *RECEIPT_ROWS[1:]]), "PNG"))
    out = invoke(ctx(services, STAFF, allow_local_files=True), "scan_receipt",
                 {"file": str(path)})
    assert out.total_cents == 837 and out.pending_action and out.account_code == "6000"
    with services.session() as s:
        assert s.get(Expense, out.expense_id).status == "draft"
        assert count(s, JournalEntry) == 0
    done = actions.confirm(services, MANAGER, out.pending_action, today=TODAY)
    assert done.outcome == "done"
    assert actions.confirm(services, MANAGER, out.pending_action,
                           today=TODAY).outcome == "already_done"
    with services.session() as s:
        assert count(s, JournalEntry) == 1


def test_a_failed_confirm_leaves_the_action_pending(services, space, tmp_path):
    """A receipt nobody could categorize cannot be posted by Confirm; it stays pending."""
    from tests.test_receipt_images import RECEIPT_ROWS, draw_receipt, encode

    path = tmp_path / "receipt.png"
    path.write_bytes(encode(draw_receipt([("ZQXV HOLDINGS", None), *RECEIPT_ROWS[1:]]), "PNG"))
    out = invoke(ctx(services, STAFF, allow_local_files=True), "scan_receipt",
                 {"file": str(path)})
    if out.account_code is not None:
        pytest.skip("the categorizer found an account for a made-up vendor")
    with pytest.raises(ValueError, match="no account yet"):
        actions.confirm(services, MANAGER, out.pending_action, today=TODAY)
    from finance.models import PendingAction

    with services.session() as s:
        row = s.execute(select(PendingAction).where(
            PendingAction.token == out.pending_action)).scalar_one()
        assert row.status == "pending" and count(s, JournalEntry) == 0


def test_scan_receipt_never_reads_server_files_for_slack_users(services, space):
    """Without a terminal, a path is refused; the Slack fetcher is the only way in."""
    with pytest.raises(ToolError, match="only be scanned from files shared"):
        invoke(ctx(services, STAFF), "scan_receipt", {"file": "/etc/passwd"})
    with pytest.raises(ToolError):
        invoke(ctx(services, STAFF, fetch_file=lambda fid: b"not an image"), "scan_receipt",
               {"file": "F123"})


def test_search_rules_cites_rule_ids(sqlite_services):
    """Policy questions come back with stable rule ids from knowledge/."""
    from finance.models import SlackUser

    with sqlite_services.session() as s:
        s.add(SlackUser(team_id="T1", user_id="USTAFF", name="Sam", role="staff"))
    out = invoke(ToolContext(services=sqlite_services, actor=STAFF, today=TODAY),
                 "search_rules", {"query": "what is the capitalization threshold?"})
    assert out.rules and "#" in out.rules[0].rule_id
    assert "2,500" in " ".join(r.text for r in out.rules)
