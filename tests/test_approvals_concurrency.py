"""Concurrent clicks on one bill: threads with their own sessions decide at the same moment.

Runs on both backends through the ``services`` fixture; the PostgreSQL variant (marked
``postgres``) is the one the approval flow is specified against: the bill row lock
(``SELECT ... FOR UPDATE``) must leave exactly one decision per step and one AP posting.
On SQLite, ``BEGIN IMMEDIATE`` serializes the same clicks.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import select

from finance import ledger
from finance.approvals import BillDraft, Decision, create_bill, decide, pay_bill
from finance.authz import Actor
from finance.models import Approval, AuditLog, JournalEntry
from tests.helpers import add_location, count
from tests.test_approvals import GM, GM2, MANAGER, STAFF, add_people

THREADS = 8


@pytest.fixture
def space(services):
    with services.session() as s:
        add_people(s, add_location(s, "DT"))
    return services


def new_bill(services, cents: int, number: str) -> int:
    view = create_bill(services, STAFF, BillDraft(
        vendor="Cool Air HVAC", amount_cents=cents, number=number,
        bill_date=date(2026, 11, 20), account_code="5400"))
    return view.id


def at_once(calls: list) -> list:
    """Run the calls in threads released together; return results (or raised exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a click never finished (deadlock?)"
    return results


def outcomes(results: list) -> Counter:
    for r in results:
        assert isinstance(r, Decision), r
    return Counter(r.outcome for r in results)


def bill_state(services, bill_id: int) -> tuple[int, int, int]:
    """(approval rows, AP journal entries, decision audit rows) of a bill."""
    with services.session() as s:
        approvals = count(s, Approval, subject_type="bill", subject_id=bill_id)
        entries = count(s, JournalEntry, source_type="bill", source_id=bill_id)
        audits = len(s.execute(select(AuditLog.id).where(
            AuditLog.entity_id == str(bill_id),
            AuditLog.action.in_(["bill.approve", "bill.reject"]))).all())  # type: ignore[attr-defined]
        assert ledger.trial_balance(s).is_balanced
    return approvals, entries, audits


def test_same_approver_clicking_many_times_at_once_records_once(space):
    """N simultaneous clicks by the same GM: one decision, one AP entry, one audit row."""
    services = space
    bill_id = new_bill(services, 150_000, "C-1")
    results = at_once([lambda: decide(services, GM, bill_id, "approve")] * THREADS)
    assert outcomes(results) == Counter({"recorded": 1, "already_decided": THREADS - 1})
    assert bill_state(services, bill_id) == (1, 1, 1)


def test_two_approvers_at_once_record_one_decision(space):
    """Two GMs clicking the same step at once: one wins, the other sees it already decided."""
    services = space
    for n in range(3):
        bill_id = new_bill(services, 150_000, f"C-2-{n}")
        results = at_once([lambda: decide(services, GM, bill_id, "approve", step="gm"),
                           lambda: decide(services, GM2, bill_id, "approve", step="gm")])
        assert outcomes(results) == Counter({"recorded": 1, "already_decided": 1})
        assert bill_state(services, bill_id) == (1, 1, 1)


def test_approve_and_reject_at_once_leave_one_consistent_outcome(space):
    """An approval racing a rejection: exactly one lands, and the bill's status matches it."""
    services = space
    bill_id = new_bill(services, 150_000, "C-3")
    results = at_once([lambda: decide(services, GM, bill_id, "approve"),
                       lambda: decide(services, GM2, bill_id, "reject", "Wrong vendor")])
    assert outcomes(results) == Counter({"recorded": 1, "already_decided": 1})
    winner = next(r for r in results if r.outcome == "recorded")
    with services.session() as s:
        decision = s.execute(select(Approval.decision).where(
            Approval.subject_id == bill_id)).scalar_one()
    approvals, entries, _ = bill_state(services, bill_id)
    if winner.bill.status == "approved":
        assert (decision, approvals, entries) == ("approved", 1, 1)
    else:
        assert (winner.bill.status, decision, approvals, entries) == (
            "rejected", "rejected", 1, 0)


def test_many_approvers_on_a_two_step_bill_never_skip_or_repeat_a_step(space):
    """GMs and the CFO all clicking at once: at most one decision per step, GM before CFO."""
    services = space
    bill_id = new_bill(services, 900_000, "C-4")
    cfo = Actor("UCFO", "T1")
    calls = [lambda: decide(services, GM, bill_id, "approve"),
             lambda: decide(services, GM2, bill_id, "approve"),
             lambda: decide(services, cfo, bill_id, "approve")] * 2
    results = at_once(calls)
    counts = outcomes(results)
    with services.session() as s:
        steps = [a.step for a in s.execute(select(Approval).where(
            Approval.subject_id == bill_id).order_by(Approval.id)).scalars()]
    assert steps in (["gm"], ["gm", "cfo"])
    assert counts["recorded"] == len(steps)
    approvals, entries, audits = bill_state(services, bill_id)
    assert (approvals, audits) == (len(steps), len(steps))
    assert entries == (1 if steps == ["gm", "cfo"] else 0)


def test_paying_twice_at_once_pays_once(space):
    """Two simultaneous payments of one bill: one payment entry, one clear refusal."""
    services = space
    bill_id = new_bill(services, 50_000, "C-5")  # auto-approved
    results = at_once([lambda: pay_bill(services, MANAGER, bill_id, "ach")] * 4)
    paid = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(paid) == 1 and len(refused) == 3
    assert all("already paid" in str(e) for e in refused)
    with services.session() as s:
        assert count(s, JournalEntry, source_type="bill_payment", source_id=bill_id) == 1


def test_a_click_waits_while_another_holds_the_bill(space):
    """While one transaction holds the bill's lock, a click waits, then sees that work."""
    from finance.approvals import _lock_bill
    from finance.models import Bill

    services = space
    bill_id = new_bill(services, 150_000, "C-6")
    holder_locked, release = threading.Event(), threading.Event()

    def hold_and_reject() -> None:
        with services.session() as s:
            bill = _lock_bill(s, bill_id)
            holder_locked.set()
            release.wait(30)
            bill.status = "rejected"  # what a decision in flight would have written
            s.add(bill)

    holder = threading.Thread(target=hold_and_reject)
    holder.start()
    assert holder_locked.wait(30)
    results: list = []
    clicker = threading.Thread(target=lambda: results.append(
        decide(services, GM, bill_id, "approve")))
    clicker.start()
    clicker.join(timeout=1.0)
    still_waiting = clicker.is_alive()
    release.set()
    holder.join(30)
    clicker.join(30)
    assert still_waiting, "the click did not wait for the lock"
    assert results and results[0].outcome == "not_pending"
    with services.session() as s:
        assert s.get(Bill, bill_id).status == "rejected"
        assert count(s, Approval, subject_id=bill_id) == 0
