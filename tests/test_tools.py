"""The typed tools: validation, roles from the store, previews that need a click, results."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import select

from finance.authz import Actor, NotAuthorized
from finance.models import Invoice, PendingAction
from tests.conftest import FIXED_NOW
from tests.helpers import add_member, build_space, count
from tools import actions
from tools.base import ToolContext, ToolError, all_tools, invoke

MANAGER = Actor("UMGR", "T1")
STAFF = Actor("USTAFF", "T1")
STRANGER = Actor("UNOBODY", "T1")
OTHER_TEAM = Actor("UMGR", "T9")
TODAY = FIXED_NOW.date()


def two_member_space(services):
    """Downtown with Acme Design (dedicated desk) and Priya Shah (hot desk) since January."""
    with services.session() as s:
        built = build_space(s, services.settings.knowledge_path)
        add_member(s, "M-ACME", "Acme Design", plan_id=built["plans"]["ded"],
                   location_id=built["location"], start=date(2026, 1, 1), price_cents=60_000)
        add_member(s, "M-PRIYA", "Priya Shah", plan_id=built["plans"]["hot"],
                   location_id=built["location"], start=date(2026, 1, 1), price_cents=30_000)
    return built


@pytest.fixture
def space(services):
    return two_member_space(services)


def ctx(services, actor=MANAGER, **kw) -> ToolContext:
    return ToolContext(services=services, actor=actor, today=TODAY, **kw)


def test_every_tool_has_a_schema_description_and_roles():
    """All DESIGN §7 tools implemented so far expose a strict JSON schema and a docstring."""
    tools = all_tools()
    for name, spec in tools.items():
        schema = spec.json_schema()
        assert schema["function"]["name"] == name
        assert schema["function"]["parameters"]["additionalProperties"] is False
        assert len(spec.description) > 40 and spec.roles


def test_quote_tool_matches_the_design_example(services, space):
    """$600 → $900 on Mar 11 (actual_days): credit −$406.45, charge $609.68, net $203.23."""
    with services.session() as s:
        from finance.models import Plan

        s.add(Plan(code="BIG", name="Big Office", desk_type="private_office", price_cents=90_000))
    out = invoke(ctx(services, STAFF), "quote_proration",
                 {"member": "Acme", "to_plan": "Big Office", "change_date": "2026-03-11"})
    assert [line.amount_cents for line in out.lines] == [-40_645, 60_968]
    assert out.net_cents == 20_323 and out.direction == "upgrade"
    assert "Acme Design" in out.summary and "$203.23" in out.summary


def test_bad_arguments_and_unknown_callers_get_clear_errors(services, space):
    """Validation errors, unknown members, strangers and other workspaces are refused cleanly."""
    with pytest.raises(ToolError, match="period must look like YYYY-MM"):
        invoke(ctx(services), "run_billing", {"period": "November"})
    with pytest.raises(ToolError, match="Extra inputs are not permitted"):
        invoke(ctx(services), "find_invoices", {"member": "Acme", "actor": "UCFO"})
    with pytest.raises(ToolError, match="no member matches 'Zed'"):
        invoke(ctx(services), "member_balance", {"member": "Zed"})
    for who in (STRANGER, OTHER_TEAM):
        with pytest.raises(ToolError, match="not a known deskbooks user"):
            invoke(ctx(services, who), "find_invoices", {})
    with pytest.raises(ToolError, match="needs one of these roles"):
        invoke(ctx(services, STAFF), "report_1099", {"year": 2026})
    with pytest.raises(ToolError, match="no tool called"):
        invoke(ctx(services), "drop_tables", {})


def test_run_billing_previews_and_writes_only_on_a_managers_click(services, space):
    """dry_run=false returns a token; staff cannot confirm; the manager's click drafts once."""
    out = invoke(ctx(services), "run_billing", {"period": "2026-02", "dry_run": False})
    assert out.invoices == 2 and out.pending_action
    with services.session() as s:
        assert count(s, Invoice) == 0  # nothing happened on the model's word
    with pytest.raises(NotAuthorized):
        actions.confirm(services, STAFF, out.pending_action, today=TODAY)
    done = actions.confirm(services, MANAGER, out.pending_action, today=TODAY)
    assert done.outcome == "done" and done.result["invoices"] == 2
    again = actions.confirm(services, MANAGER, out.pending_action, today=TODAY)
    assert again.outcome == "already_done"
    with services.session() as s:
        assert count(s, Invoice) == 2 and count(s, Invoice, status="draft") == 2
    issued = actions.confirm(services, MANAGER, done.result["next_action"], today=TODAY)
    assert issued.outcome == "done" and issued.result["issued"] == 2
    found = invoke(ctx(services), "find_invoices", {"member": "Priya Shah", "status": "open"})
    assert found.count == 1 and found.invoices[0].number
    balance = invoke(ctx(services, STAFF), "member_balance", {"member": "M-PRIYA"})
    assert balance.balance_cents == found.invoices[0].total_cents > 0
    assert balance.open_invoices == 1


def test_dry_run_and_cancel_write_nothing(services, space):
    """A preview writes nothing; a cancelled action cannot be confirmed afterwards."""
    out = invoke(ctx(services), "run_billing", {"period": "2026-02"})
    assert out.pending_action is None and out.summary.startswith("preview")
    ready = invoke(ctx(services), "run_billing", {"period": "2026-02", "dry_run": False})
    assert actions.cancel(services, MANAGER, ready.pending_action).outcome == "cancelled"
    late = actions.confirm(services, MANAGER, ready.pending_action, today=TODAY)
    assert late.outcome == "cancelled"
    with services.session() as s:
        assert count(s, Invoice) == 0


def test_concurrent_confirm_clicks_run_the_action_once(services, space):
    """Four simultaneous clicks on one Confirm button create the drafts exactly once."""
    out = invoke(ctx(services), "run_billing", {"period": "2026-02", "dry_run": False})
    results: list[str] = []
    errors: list[BaseException] = []

    def click() -> None:
        try:
            results.append(actions.confirm(services, MANAGER, out.pending_action,
                                           today=TODAY).outcome)
        except BaseException as exc:  # a lost race may surface as a DB error; never a 2nd run
            errors.append(exc)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("done") == 1, (results, errors)
    with services.session() as s:
        assert count(s, Invoice) == 2
        row = s.execute(select(PendingAction)
                        .where(PendingAction.token == out.pending_action)).scalar_one()
        assert row.status == "done" and row.decided_by == "UMGR"


def test_report_tools(services, space):
    """The 1099 and sales tax tools return the reports' figures with a summary."""
    out = invoke(ctx(services), "report_1099", {"year": 2026})
    assert out.threshold_cents == 200_000 and out.contractors == []
    tax = invoke(ctx(services), "sales_tax_report",
                 {"start": "2026-01-01", "end": "2026-03-31", "location": "Downtown"})
    assert tax.net_tax_cents == 0 and tax.locations[0].matches_ledger
    with pytest.raises(ToolError, match="end is before start"):
        invoke(ctx(services), "sales_tax_report", {"start": "2026-03-01", "end": "2026-01-01"})
