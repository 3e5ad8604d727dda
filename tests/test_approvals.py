"""Bill approvals on SQLite and PostgreSQL: routing, the GM → CFO chain, who may decide,
double clicks, delegation, segregation of duties, audit rows, AP postings and payment."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from finance import ledger
from finance.approvals import (
    BillDraft,
    BillError,
    DuplicateBill,
    PolicyError,
    approvers_for,
    create_bill,
    decide,
    get_bill,
    list_bills,
    load_policy,
    pay_bill,
    pending_for,
    record_message,
    set_delegation,
)
from finance.authz import Actor, NotAuthorized
from finance.models import Approval, AuditLog, Delegation, JournalEntry, SlackUser, Vendor
from finance.services import build_services
from finance.settings import default_knowledge_dir, load_settings
from tests.conftest import FIXED_NOW
from tests.helpers import add_location, count

STAFF = Actor("USTAFF", "T1")
STAFF2 = Actor("USTAFF2", "T1")
MANAGER = Actor("UMGR", "T1")
GM = Actor("UGM", "T1")
GM2 = Actor("UGM2", "T1")
CFO = Actor("UCFO", "T1")
ADMIN = Actor("UADMIN", "T1")
SYSTEM = Actor.system("test")

runner = CliRunner()


def add_people(session, location_id: int) -> None:
    """The workspace T1 with every role, an inactive GM, and a GM of another workspace."""
    session.add_all([
        SlackUser(team_id="T1", user_id="USTAFF", name="Sam Staff", role="staff",
                  location_id=location_id),
        SlackUser(team_id="T1", user_id="USTAFF2", name="Sid Staff", role="staff"),
        SlackUser(team_id="T1", user_id="UMGR", name="Maya Manager", role="manager"),
        SlackUser(team_id="T1", user_id="UGM", name="Gina GM", role="gm"),
        SlackUser(team_id="T1", user_id="UGM2", name="Greg GM", role="gm"),
        SlackUser(team_id="T1", user_id="UCFO", name="Carla CFO", role="cfo"),
        SlackUser(team_id="T1", user_id="UADMIN", name="Ada Admin", role="admin"),
        SlackUser(team_id="T1", user_id="UGONE", name="Gone GM", role="gm", active=False),
        SlackUser(team_id="T2", user_id="UOUT", name="Other GM", role="gm"),
    ])
    session.flush()


@pytest.fixture
def space(services):
    with services.session() as s:
        loc = add_location(s, "DT")
        add_people(s, loc)
    return {"location": loc}


def enter(services, dollars: str, number: str = "B-1", *, actor: Actor = STAFF,
          vendor: str = "Metro Facility Repairs", account: str = "5400", **kw):
    from finance.money import parse_amount

    return create_bill(services, actor, BillDraft(
        vendor=vendor, amount_cents=parse_amount(dollars), number=number,
        bill_date=date(2026, 11, 20), due_date=date(2026, 12, 20), account_code=account, **kw))


def bill_entries(session, bill_id: int) -> list[JournalEntry]:
    return list(session.execute(select(JournalEntry).where(
        JournalEntry.source_id == bill_id,
        JournalEntry.source_type.in_(["bill", "bill_payment"])  # type: ignore[union-attr]
    ).order_by(JournalEntry.id)).scalars())


def audit_actions(session, bill_id: int) -> list[str]:
    return [r.action for r in session.execute(select(AuditLog).where(
        AuditLog.entity_type == "bill", AuditLog.entity_id == str(bill_id)
    ).order_by(AuditLog.id)).scalars()]


# --------------------------------------------------------------------------- policy


def test_shipped_policy_routes_by_the_design_thresholds():
    """$1,000.00 is auto-approved, one cent more needs a GM, over $5,000.00 a GM then the CFO."""
    policy = load_policy(default_knowledge_dir())
    assert policy.route(100_000) == []
    assert policy.route(100_001) == ["gm"]
    assert policy.route(500_000) == ["gm"]
    assert policy.route(500_001) == ["gm", "cfo"]
    assert policy.auto_approve_max_cents == 100_000
    assert policy.admin_may_decide is True


@pytest.mark.parametrize("body, message", [
    ("steps:\n  - {name: gm, over: 1000.00, roles: [gm]}\n", "written as a string"),
    ("steps:\n  - {name: gm, over: '1000.00', roles: [gm]}\n"
     "  - {name: cfo, over: '900.00', roles: [cfo]}\n", "must increase"),
    ("steps:\n  - {name: gm, over: '1000.00', roles: [boss]}\n", "unknown role"),
    ("steps:\n  - {name: gm, over: '1000.00', roles: [gm]}\n"
     "  - {name: gm, over: '2000.00', roles: [gm]}\n", "appears twice"),
    ("steps:\n  - {name: gm, over: '10.001', roles: [gm]}\n", "fractions of a cent"),
    ("admin_may_decide: maybe\nsteps: []\n", "true or false"),
    ("steps: {gm: 1}\n", "must be a list"),
])
def test_bad_policy_files_are_refused_with_the_reason(tmp_path, body, message):
    """A malformed approval policy is refused with a message naming the problem."""
    (tmp_path / "approval_policy.yaml").write_text(body)
    with pytest.raises(PolicyError, match=message):
        load_policy(tmp_path)


# --------------------------------------------------------------------------- routing


ROUTES = [("1000.00", []), ("1000.01", ["gm"]), ("5000.00", ["gm"]),
          ("5000.01", ["gm", "cfo"])]


def test_bills_are_routed_by_amount_at_the_boundaries(services, space):
    """Each threshold boundary gets the steps the policy names; none means auto-approved."""
    for n, (dollars, steps) in enumerate(ROUTES):
        view = enter(services, dollars, f"R-{n}")
        assert list(view.required_steps) == steps, dollars
        with services.session() as s:
            entries = bill_entries(s, view.id)
            actions = audit_actions(s, view.id)
        if steps:
            assert view.status == "pending" and view.next_step == "gm"
            assert entries == [] and actions == ["bill.create"]
        else:
            assert view.status == "approved" and view.auto_approved
            assert len(entries) == 1 and view.journal_entry_id == entries[0].id
            assert actions == ["bill.create", "bill.auto_approve"]
            with services.session() as s:
                row = s.execute(select(AuditLog).where(AuditLog.action == "bill.auto_approve")
                                ).scalar_one()
            assert row.details["reason"] == "auto-approved under $1,000.00"


def test_auto_approved_bill_posts_expense_against_payable(services, space):
    """The AP entry debits the bill's account, credits 2000, carries the location, balances."""
    view = enter(services, "250.00")
    with services.session() as s:
        legs = ledger.entry_legs(s, view.journal_entry_id)
        assert ledger.trial_balance(s).is_balanced
    assert sorted((leg.account, leg.amount_cents) for leg in legs) == [
        ("2000", -25_000), ("5400", 25_000)]
    assert {leg.location_id for leg in legs} == {space["location"]}
    assert {leg.vendor_id for leg in legs} == {view.vendor_id}


def test_duplicate_vendor_bill_number_is_refused_and_vendor_reused(services, space):
    """The same vendor (any spelling) and number twice is a clear error; vendors dedupe."""
    first = enter(services, "2000.00", "INV-77", vendor="Acme Plumbing, Inc.")
    second = enter(services, "300.00", "INV-78", vendor="ACME plumbing inc")
    assert second.vendor_id == first.vendor_id
    with pytest.raises(DuplicateBill, match="INV-77 is already entered"):
        enter(services, "2000.00", "INV-77", vendor="acme  plumbing inc.")
    with services.session() as s:
        assert count(s, Vendor) == 1


BAD_BILLS = [
    ({"account": "4000"}, "cannot be coded to 4000"),
    ({"account": "9999"}, "unknown account"),
    ({"vendor": "  "}, "needs a vendor"),
    ({"location": "XX"}, "unknown location"),
    ({"number": ""}, "the vendor's bill"),
]


def test_bad_bills_are_refused_and_nothing_is_written(services, space):
    """Bad accounts, vendors, locations and numbers are refused before anything is stored."""
    for kw, message in BAD_BILLS:
        with pytest.raises(BillError, match=message):
            enter(services, "1500.00", **({"number": "B-9"} | kw))
    with services.session() as s:
        assert count(s, Vendor) == 0 and count(s, AuditLog, entity_type="bill") == 0


def test_amounts_must_be_positive_cents(services, space):
    """Zero, negative and non-integer amounts are refused."""
    for cents in (0, -500):
        with pytest.raises(BillError, match="more than zero"):
            create_bill(services, STAFF, BillDraft("V", cents, "N", date(2026, 11, 1)))
    with pytest.raises(BillError, match="integer cents"):
        create_bill(services, STAFF, BillDraft("V", 10.5, "N", date(2026, 11, 1)))  # type: ignore[arg-type]


def test_capex_account_is_allowed_and_creators_need_a_role(services, space):
    """A bill may be coded to a CapEx account; unknown users cannot enter bills at all."""
    view = enter(services, "3200.00", "CHAIR-1", account="1500", vendor="Herman Miller")
    assert view.account_code == "1500"
    with pytest.raises(NotAuthorized):
        enter(services, "10.00", "X-1", actor=Actor("UNOBODY", "T1"))
    with pytest.raises(NotAuthorized):
        enter(services, "10.00", "X-2", actor=Actor("UGONE", "T1"))


# --------------------------------------------------------------------------- deciding


def test_gm_then_cfo_chain_posts_once_with_audit_rows(services, space):
    """Over $5,000: the GM approves, then the CFO; the bill posts to AP exactly once."""
    view = enter(services, "6400.00")
    first = decide(services, GM, view.id, "approve")
    assert first.outcome == "recorded" and first.step == "gm"
    assert first.bill.status == "pending" and first.bill.next_step == "cfo"
    assert "waiting on the CFO step" in first.message
    second = decide(services, CFO, view.id, "approve")
    assert second.outcome == "recorded" and second.step == "cfo"
    assert second.bill.status == "approved"
    assert [(a.step, a.decided_by) for a in second.bill.approvals] == [("gm", "UGM"),
                                                                       ("cfo", "UCFO")]
    with services.session() as s:
        entries = bill_entries(s, view.id)
        assert len(entries) == 1 and entries[0].idempotency_key == f"bill:{view.id}"
        assert audit_actions(s, view.id) == ["bill.create", "bill.approve", "bill.approve"]
        assert ledger.balance(s, "2000") == -640_000
        assert ledger.trial_balance(s).is_balanced


def test_steps_are_sequential_so_the_cfo_cannot_go_first(services, space):
    """The CFO clicking before the GM gets not_your_step and nothing is written."""
    view = enter(services, "9000.00")
    result = decide(services, CFO, view.id, "approve")
    assert result.outcome == "not_your_step" and not result.changed
    assert "waiting on the GM step" in result.message
    stepped = decide(services, CFO, view.id, "approve", step="cfo")
    assert stepped.outcome == "not_your_step"
    with services.session() as s:
        assert count(s, Approval) == 0 and audit_actions(s, view.id) == ["bill.create"]


def test_roles_without_authority_for_the_step_are_refused(services, space):
    """A manager, staff or the CFO cannot decide the GM step of a GM-only bill."""
    view = enter(services, "1500.00")
    for actor in (MANAGER, STAFF2, CFO):
        result = decide(services, actor, view.id, "approve")
        assert result.outcome == "not_your_step" and "needs a gm" in result.message
    with services.session() as s:
        assert count(s, Approval) == 0


STRANGERS = [Actor("UNOBODY", "T1"), Actor("UGONE", "T1"), Actor("UGM", "T2"),
             Actor("UOUT", "T1"), Actor("UGM", None)]


def test_unknown_inactive_and_other_workspace_users_are_not_authorized(services, space):
    """Only an active user of the workspace, looked up by team and user id, may click."""
    view = enter(services, "1500.00")
    for actor in STRANGERS:
        with pytest.raises(NotAuthorized):
            decide(services, actor, view.id, "approve")
    with services.session() as s:
        assert count(s, Approval) == 0 and audit_actions(s, view.id) == ["bill.create"]


def test_a_gm_of_another_workspace_cannot_decide_this_workspaces_bill(services, space):
    """A bill entered in workspace T1 is decided by T1's people only."""
    view = enter(services, "1500.00")
    with pytest.raises(NotAuthorized, match="another Slack workspace"):
        decide(services, Actor("UOUT", "T2"), view.id, "approve")
    with services.session() as s:
        assert pending_for(s, Actor("UOUT", "T2"), now=FIXED_NOW) == []
        assert count(s, Approval) == 0


def test_double_click_and_second_approver_change_nothing(services, space):
    """A repeat click, with or without the step, and a second GM's click are no-ops."""
    view = enter(services, "1500.00")
    assert decide(services, GM, view.id, "approve").outcome == "recorded"
    for actor, step in ((GM, None), (GM, "gm"), (GM2, None), (GM2, "gm")):
        again = decide(services, actor, view.id, "approve", step=step)
        assert again.outcome == "already_decided", (actor, step, again.message)
        assert "already approved by <@UGM>" in again.message
    late_reject = decide(services, GM2, view.id, "reject", "duplicate", step="gm")
    assert late_reject.outcome == "already_decided"
    with services.session() as s:
        assert count(s, Approval) == 1 and len(bill_entries(s, view.id)) == 1
        assert audit_actions(s, view.id) == ["bill.create", "bill.approve"]


def test_click_on_auto_approved_bill_is_not_pending(services, space):
    """An auto-approved bill has nothing to decide."""
    view = enter(services, "99.00")
    result = decide(services, GM, view.id, "approve")
    assert result.outcome == "not_pending" and "auto-approved" in result.message


def test_rejection_needs_a_reason(services, space):
    """Reject without a reason is refused and writes nothing."""
    view = enter(services, "1500.00")
    for reason in (None, "", "   "):
        with pytest.raises(BillError, match="needs a reason"):
            decide(services, GM, view.id, "reject", reason)
    with services.session() as s:
        assert count(s, Approval) == 0


def test_rejection_is_final_and_posts_nothing(services, space):
    """A GM rejection with a reason ends the chain; the CFO has nothing left to decide."""
    view = enter(services, "7000.00")
    result = decide(services, GM, view.id, "reject", "  Landlord pays for this repair ")
    assert result.outcome == "recorded" and result.bill.status == "rejected"
    assert result.bill.approvals[0].reason == "Landlord pays for this repair"
    assert decide(services, CFO, view.id, "approve").outcome == "not_pending"
    with services.session() as s:
        assert bill_entries(s, view.id) == []
        row = s.execute(select(AuditLog).where(AuditLog.action == "bill.reject")).scalar_one()
        assert row.details["reason"] == "Landlord pays for this repair"


def test_creator_never_decides_their_own_bill(services, space):
    """A GM who entered a bill cannot approve it; another GM can."""
    view = enter(services, "1500.00", actor=GM)
    refused = decide(services, GM, view.id, "approve")
    assert refused.outcome == "not_your_step" and "you entered this bill" in refused.message
    assert decide(services, GM2, view.id, "approve").outcome == "recorded"


def test_nobody_decides_two_steps_of_one_bill(services, space):
    """A GM who is also the CFO's delegate cannot approve both steps of the same bill."""
    with services.session() as s:
        s.add(Delegation(approver_user_id="UCFO", delegate_user_id="UGM",
                         starts_on=date(2026, 11, 1), ends_on=date(2026, 12, 31)))
    view = enter(services, "8000.00")
    assert decide(services, GM, view.id, "approve").outcome == "recorded"
    again = decide(services, GM, view.id, "approve")
    assert again.outcome == "already_decided"
    assert decide(services, CFO, view.id, "approve").outcome == "recorded"


def test_a_location_gm_decides_only_their_locations_bills(services, space):
    """The Riverside GM cannot approve a Downtown bill, is not notified of it, but approves
    Riverside's; GMs without a home location decide for every location."""
    with services.session() as s:
        rs = add_location(s, "RS", tz="America/Chicago")
        s.add(SlackUser(team_id="T1", user_id="UGMRS", name="Rita GM", role="gm",
                        location_id=rs))
    gm_rs = Actor("UGMRS", "T1")
    downtown = enter(services, "1500.00", "DT-1", location="DT")
    riverside = enter(services, "1500.00", "RS-1", location="RS")
    refused = decide(services, gm_rs, downtown.id, "approve")
    assert refused.outcome == "not_your_step" and "another location" in refused.message
    with services.session() as s:
        assert approvers_for(s, downtown.id, now=FIXED_NOW) == ["UGM", "UGM2"]
        assert approvers_for(s, riverside.id, now=FIXED_NOW) == ["UGM", "UGM2", "UGMRS"]
        assert [b.id for b in pending_for(s, gm_rs, now=FIXED_NOW)] == [riverside.id]
    assert decide(services, gm_rs, riverside.id, "approve").outcome == "recorded"
    assert decide(services, GM, downtown.id, "approve").outcome == "recorded"


def test_admin_may_decide_the_current_step_but_not_skip_or_repeat(services, space):
    """An admin stands in for the GM step; a second admin click does not take the CFO step."""
    view = enter(services, "8000.00")
    first = decide(services, ADMIN, view.id, "approve")
    assert first.outcome == "recorded" and first.step == "gm"
    assert decide(services, ADMIN, view.id, "approve").outcome == "already_decided"
    assert decide(services, CFO, view.id, "approve").bill.status == "approved"


def test_admin_cannot_decide_when_the_policy_says_so(services, space, tmp_path):
    """With admin_may_decide: false an admin is refused like any other role."""
    knowledge = tmp_path / "kb"
    shutil.copytree(default_knowledge_dir(), knowledge)
    path = knowledge / "approval_policy.yaml"
    path.write_text(path.read_text().replace("admin_may_decide: true",
                                             "admin_may_decide: false"))
    services.settings = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path),
                                      DESKBOOKS_KNOWLEDGE_DIR=str(knowledge))
    view = enter(services, "1500.00")
    assert decide(services, ADMIN, view.id, "approve").outcome == "not_your_step"


# --------------------------------------------------------------------------- delegation


def test_active_delegate_decides_on_behalf_of_the_gm(services, space):
    """A staff delegate of the GM approves the GM step, recorded on behalf of the GM."""
    set_delegation(services, GM, "USTAFF2", date(2026, 11, 25), date(2026, 12, 5))
    view = enter(services, "1500.00")
    result = decide(services, STAFF2, view.id, "approve")
    assert result.outcome == "recorded" and result.on_behalf_of == "UGM"
    assert result.bill.approvals[0].on_behalf_of == "UGM"
    assert result.bill.approvals[0].decided_by == "USTAFF2"
    with services.session() as s:
        row = s.execute(select(AuditLog).where(AuditLog.action == "bill.approve")).scalar_one()
        assert row.actor == "USTAFF2" and row.details["on_behalf_of"] == "UGM"


def test_expired_or_future_delegation_gives_no_authority(services, space):
    """Outside its dates a delegation does nothing."""
    with services.session() as s:
        s.add_all([
            Delegation(approver_user_id="UGM", delegate_user_id="USTAFF2",
                       starts_on=date(2026, 11, 1), ends_on=date(2026, 11, 20)),
            Delegation(approver_user_id="UGM", delegate_user_id="USTAFF2",
                       starts_on=date(2026, 12, 1), ends_on=date(2026, 12, 20)),
        ])
    view = enter(services, "1500.00")
    assert decide(services, STAFF2, view.id, "approve").outcome == "not_your_step"


def test_delegation_dates_are_read_in_the_location_time_zone(services, space):
    """At 03:00 UTC on Nov 29 it is still Nov 28 in New York, so a delegation ending Nov 28
    still holds there."""
    with services.session() as s:
        s.add(Delegation(approver_user_id="UGM", delegate_user_id="USTAFF2",
                         starts_on=date(2026, 11, 20), ends_on=date(2026, 11, 28)))
    view = enter(services, "1500.00")
    late = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)  # 01:00 in New York: Nov 29 there
    assert decide(services, STAFF2, view.id, "approve", now=late).outcome == "not_your_step"
    early = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # 22:00 Nov 28 in New York
    result = decide(services, STAFF2, view.id, "approve", now=early)
    assert result.outcome == "recorded" and result.bill.approvals[0].decided_at == early


def test_a_delegate_cannot_approve_a_bill_they_entered(services, space):
    """Segregation of duties holds through delegation: the creator never approves."""
    set_delegation(services, GM, "USTAFF2", date(2026, 11, 25), date(2026, 12, 5))
    view = enter(services, "1500.00", actor=STAFF2)
    result = decide(services, STAFF2, view.id, "approve")
    assert result.outcome == "not_your_step" and "you entered this bill" in result.message


def test_delegation_rules(services, space):
    """Only a GM or CFO delegates, never to themselves, only to an active colleague."""
    for actor in (STAFF, MANAGER, ADMIN, SYSTEM, Actor("UNOBODY", "T1")):
        with pytest.raises(NotAuthorized):
            set_delegation(services, actor, "USTAFF2", date(2026, 12, 1), date(2026, 12, 5))
    with pytest.raises(BillError, match="yourself"):
        set_delegation(services, GM, "UGM", date(2026, 12, 1), date(2026, 12, 5))
    with pytest.raises(BillError, match="not an active deskbooks user"):
        set_delegation(services, GM, "UGONE", date(2026, 12, 1), date(2026, 12, 5))
    with pytest.raises(BillError, match="not an active deskbooks user"):
        set_delegation(services, GM, "UOUT", date(2026, 12, 1), date(2026, 12, 5))
    with pytest.raises(BillError, match="before it starts"):
        set_delegation(services, CFO, "USTAFF2", date(2026, 12, 5), date(2026, 12, 1))
    made = set_delegation(services, CFO, "USTAFF2", date(2026, 12, 1), date(2026, 12, 5))
    assert (made.approver_user_id, made.delegate_user_id) == ("UCFO", "USTAFF2")
    with services.session() as s:
        assert count(s, Delegation) == 1
        assert count(s, AuditLog, action="approval.delegate") == 1


# --------------------------------------------------------------------------- queries


def test_pending_for_and_approvers_for_follow_the_chain(services, space):
    """GMs see GM-step bills, the CFO sees a bill only once the GM approved it; approvers
    include active delegates and never the creator."""
    set_delegation(services, GM2, "USTAFF2", date(2026, 11, 25), date(2026, 12, 5))
    small = enter(services, "1500.00", "S-1")
    big = enter(services, "9000.00", "L-1", actor=GM)
    enter(services, "10.00", "A-1")
    with services.session() as s:
        assert [b.id for b in pending_for(s, GM2, now=FIXED_NOW)] == [small.id, big.id]
        assert [b.id for b in pending_for(s, GM, now=FIXED_NOW)] == [small.id]
        assert pending_for(s, CFO, now=FIXED_NOW) == []
        assert [b.id for b in pending_for(s, STAFF2, now=FIXED_NOW)] == [small.id, big.id]
        assert pending_for(s, Actor("UNOBODY", "T1"), now=FIXED_NOW) == []
        assert approvers_for(s, small.id, now=FIXED_NOW) == ["UGM", "UGM2", "USTAFF2"]
        assert approvers_for(s, big, now=FIXED_NOW) == ["UGM2", "USTAFF2"]
    decide(services, GM2, big.id, "approve")
    with services.session() as s:
        assert [b.id for b in pending_for(s, CFO, now=FIXED_NOW)] == [big.id]
        assert approvers_for(s, big.id, now=FIXED_NOW) == ["UCFO"]
        assert [b.id for b in list_bills(s, status="pending")] == [small.id, big.id]
        assert len(list_bills(s, location="DT")) == 3
        with pytest.raises(BillError, match="status must be one of"):
            list_bills(s, status="open")


def test_record_message_remembers_the_slack_message(services, space):
    """The Slack channel and ts of a bill's message are stored for later updates."""
    view = enter(services, "1500.00")
    record_message(services, view.id, "C123", "1732870000.000100")
    with services.session() as s:
        got = get_bill(s, view.id)
    assert (got.slack_channel, got.slack_ts) == ("C123", "1732870000.000100")
    with pytest.raises(BillError):
        record_message(services, view.id, "", "1")


# --------------------------------------------------------------------------- payment


def test_payment_clears_payables_against_cash_or_card(services, space):
    """Paying an approved bill debits 2000 and credits cash (or the card) once."""
    for n, (method, credit) in enumerate((("ach", "1000"), ("check", "1000"),
                                          ("cash", "1000"), ("card", "2500"))):
        view = enter(services, "1500.00", f"P-{n}")
        decide(services, GM, view.id, "approve")
        paid = pay_bill(services, MANAGER, view.id, method, paid_on=date(2026, 11, 28))
        assert paid.status == "paid" and paid.payment_method == method
        assert paid.paid_on == date(2026, 11, 28)
        with services.session() as s:
            legs = ledger.entry_legs(s, paid.payment_journal_entry_id)
            assert sorted((leg.account, leg.amount_cents) for leg in legs) == sorted(
                [("2000", 150_000), (credit, -150_000)])
            assert ledger.balance(s, "2000") == 0
            assert ledger.trial_balance(s).is_balanced
        with pytest.raises(BillError, match="already paid"):
            pay_bill(services, MANAGER, view.id, method)


def test_payment_refusals(services, space):
    """Pending bills, unknown methods and staff payers are refused."""
    view = enter(services, "1500.00")
    with pytest.raises(BillError, match="only approved bills"):
        pay_bill(services, MANAGER, view.id, "ach")
    decide(services, GM, view.id, "approve")
    with pytest.raises(BillError, match="payment method"):
        pay_bill(services, MANAGER, view.id, "bitcoin")
    with pytest.raises(NotAuthorized):
        pay_bill(services, STAFF, view.id, "ach")
    with pytest.raises(BillError, match="no bill #999"):
        pay_bill(services, MANAGER, 999, "ach")
    with services.session() as s:
        assert [e.source_type for e in bill_entries(s, view.id)] == ["bill"]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_books(tmp_path, monkeypatch):
    """A migrated SQLite store with one location and the T1 workspace."""
    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    assert runner.invoke(app, ["init"]).exit_code == 0
    svc = build_services(load_settings())
    with svc.session() as s:
        add_people(s, add_location(s, "DT"))
    svc.dispose()
    return tmp_path


def cli(*args: str):
    return runner.invoke(app, ["bills", *args])


def test_cli_bill_lifecycle(cli_books):
    """create → approve (GM) → approve (CFO) → pay, with JSON output and one-line errors."""
    made = cli("create", "--vendor", "Cool Air HVAC", "--amount", "5,200.00", "--number",
               "CA-1", "--date", "2026-11-20", "--account", "5400", "--as", "USTAFF", "--json")
    assert made.exit_code == 0, made.output
    bill = json.loads(made.stdout)
    assert bill["required_steps"] == ["gm", "cfo"] and bill["amount_cents"] == 520_000
    bid = str(bill["id"])
    wrong = cli("approve", bid, "--as", "UCFO")
    assert wrong.exit_code == 2 and "waiting on the GM step" in wrong.output
    assert cli("approve", bid, "--as", "UGM").exit_code == 0
    again = cli("approve", bid, "--as", "UGM")
    assert again.exit_code == 0 and "nothing changed" in again.output
    done = cli("approve", bid, "--as", "UCFO", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["bill"]["status"] == "approved"
    paid = cli("pay", bid, "--method", "card", "--as", "UMGR", "--json")
    assert paid.exit_code == 0, paid.output
    assert json.loads(paid.stdout)["payment_method"] == "card"
    listed = cli("list", "--status", "paid", "--json")
    assert [b["id"] for b in json.loads(listed.stdout)["bills"]] == [bill["id"]]
    shown = cli("show", bid)
    assert "cfo: approved by UCFO" in shown.output


def test_cli_reject_delegate_and_errors(cli_books):
    """Reject needs --reason, delegation needs --as; service refusals exit 2 without traces."""
    made = cli("create", "--vendor", "Cool Air HVAC", "--amount", "1200", "--number", "CA-2",
               "--date", "2026-11-20", "--account", "5400", "--as", "USTAFF", "--json")
    bid = str(json.loads(made.stdout)["id"])
    assert cli("reject", bid, "--as", "UGM").exit_code == 2  # --reason is required
    blank = cli("reject", bid, "--reason", " ", "--as", "UGM")
    assert blank.exit_code == 2 and "needs a reason" in blank.output
    assert "Traceback" not in blank.output
    dup = cli("create", "--vendor", "cool air hvac", "--amount", "1200", "--number", "CA-2",
              "--date", "2026-11-20", "--account", "5400")
    assert dup.exit_code == 2 and "already entered" in dup.output
    nodel = cli("delegate", "--to", "USTAFF2", "--from", "2026-11-01", "--until", "2099-12-01")
    assert nodel.exit_code == 2 and "--as" in nodel.output
    ok = cli("delegate", "--to", "USTAFF2", "--from", "2026-11-01", "--until", "2099-12-01",
             "--as", "UGM", "--json")
    assert ok.exit_code == 0, ok.output
    pending = cli("pending", "--as", "USTAFF2", "--json")
    assert [b["id"] for b in json.loads(pending.stdout)["bills"]] == [int(bid)]
    rejected = cli("reject", bid, "--reason", "Wrong site", "--as", "USTAFF2", "--json")
    assert rejected.exit_code == 0, rejected.output
    assert json.loads(rejected.stdout)["on_behalf_of"] == "UGM"
    stranger = cli("approve", bid, "--as", "UNOBODY")
    assert stranger.exit_code == 2 and "not a known deskbooks user" in stranger.output
    missing = cli("show", "999")
    assert missing.exit_code == 2 and "no bill #999" in missing.output
