"""Fault tests: billing killed half way and rerun, concurrent runs and issues, on both backends.

What "loses nothing" means here, checked by :func:`assert_books_sound` after every fault:
every approved invoice ends up issued exactly once, invoice numbers run 1..N with no gap and
no repeat, there is exactly one journal entry per invoice (idempotency key ``invoice:<id>``),
and the trial balance is zero. What "half way" means: the crash happens after the number
sequence was advanced and journal entries were inserted, before the invoices were updated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from finance import ledger
from finance.authz import Actor
from finance.billing import BillingEngine, BillingError, BillingPolicy
from finance.models import (
    AuditLog,
    BillingRun,
    Invoice,
    InvoiceStatus,
    JournalEntry,
    JournalLine,
    NumberSequence,
)
from tests.helpers import add_location, add_member, all_rows, build_space, count

MANAGER = Actor("UMGR", "T1")
PERIOD = "2026-03"
ISSUE_ON = date(2026, 3, 1)
MEMBERS = 12
ROOT = Path(__file__).resolve().parent.parent


def engine(services: Any) -> BillingEngine:
    return BillingEngine(services.chart, BillingPolicy())


@pytest.fixture
def space(services):
    with services.session() as s:
        info = build_space(s, services.settings.knowledge_path)
        for i in range(MEMBERS):
            add_member(s, f"M-{i:02d}", f"Member {i:02d}", plan_id=info["plans"]["hot"],
                       location_id=info["location"], start=date(2026, 3, 1),
                       price_cents=30_000 + i * 100)
    return info


@pytest.fixture
def approved(services, space) -> list[int]:
    """The March run drafted and approved (ids in order), nothing issued yet."""
    eng = engine(services)
    with services.session() as s:
        result = eng.run(s, PERIOD, actor=MANAGER, dry_run=False)
        assert eng.approve(s, result.invoice_ids, actor=MANAGER) == MEMBERS
    return list(result.invoice_ids)


def snapshot(services: Any) -> dict[str, Any]:
    """Everything an issue writes: entries, lines, audit rows, the number sequence, invoices."""
    with services.session() as s:
        seq = s.execute(select(NumberSequence.last_value)
                        .where(NumberSequence.name == "invoice")).scalar_one_or_none()
        return {
            "entries": count(s, JournalEntry), "lines": count(s, JournalLine),
            "audit": count(s, AuditLog), "sequence": seq,
            "invoices": [(i.id, i.status, i.number, i.journal_entry_id)
                         for i in all_rows(s, Invoice, Invoice.id)],
        }


def assert_books_sound(services: Any, ids: list[int]) -> None:
    """Each invoice issued once, numbers 1..N without gaps, one entry each, books balanced."""
    with services.session() as s:
        invoices = [s.get(Invoice, i) for i in ids]
        numbers = sorted(int(inv.number.rsplit("-", 1)[1]) for inv in invoices if inv.number)
        assert numbers == list(range(1, len(ids) + 1))
        assert all(inv.status == InvoiceStatus.OPEN for inv in invoices)
        keys = list(s.execute(select(JournalEntry.idempotency_key)
                              .where(JournalEntry.source_type == "invoice")).scalars())
        assert sorted(keys) == sorted(f"invoice:{i}" for i in ids)
        assert {inv.journal_entry_id for inv in invoices} == set(
            s.execute(select(JournalEntry.id).where(JournalEntry.source_type == "invoice"))
            .scalars())
        assert ledger.trial_balance(s).is_balanced
        assert ledger.balance(s, "1100") == sum(inv.total_cents for inv in invoices)


class Crash(RuntimeError):
    """The process 'dies' here (raised from inside the unit of work)."""


def _crash_after_posting(monkeypatch: Any) -> None:
    """Entries and their lines go in, numbers are reserved, then the process 'dies'."""
    real = ledger.post_entries

    def post_then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise Crash("killed right after posting")

    monkeypatch.setattr(ledger, "post_entries", post_then_die)


def _crash_at_last_audit_row(monkeypatch: Any) -> None:
    """Everything of the issue is written except its closing audit row, then it 'dies'."""
    from finance import audit

    real = audit.record

    def record(session: Any, **kwargs: Any) -> Any:
        if kwargs.get("action") == "invoice.issue":
            raise Crash("killed before the audit row")
        return real(session, **kwargs)

    monkeypatch.setattr(audit, "record", record)


@pytest.mark.parametrize("crash", [_crash_after_posting, _crash_at_last_audit_row],
                         ids=["after_posting", "at_last_audit_row"])
def test_issue_crashing_half_way_rolls_back_then_rerun_issues_each_once(
        services, approved, monkeypatch, crash):
    """A crash after numbers and entries were written leaves no trace; the rerun is whole."""
    before = snapshot(services)
    with monkeypatch.context() as m:
        crash(m)
        with pytest.raises(Crash), services.session() as s:
            engine(services).issue(s, approved, actor=MANAGER, on=ISSUE_ON)
    assert snapshot(services) == before  # nothing half written: no number burnt either
    with services.session() as s:
        assert engine(services).issue(s, approved, actor=MANAGER, on=ISSUE_ON) == approved
    with services.session() as s:  # a third run (an operator retrying) changes nothing
        assert engine(services).issue(s, approved, actor=MANAGER, on=ISSUE_ON) == []
    assert_books_sound(services, approved)


def test_billing_run_crashing_while_storing_drafts_leaves_no_run_marker(services, space,
                                                                        monkeypatch):
    """A run that dies after storing drafts leaves no billing_run row either, so the rerun
    is not skipped as 'already run' (on SQLite the marker used to be committed on its own)."""

    def crash(*args: Any, **kwargs: Any) -> None:
        raise Crash("killed while linking usage")

    with monkeypatch.context() as m:
        m.setattr(BillingEngine, "_link_usage", crash)
        with pytest.raises(Crash), services.session() as s:
            engine(services).run(s, PERIOD, actor=MANAGER, dry_run=False)
    with services.session() as s:
        assert (count(s, BillingRun), count(s, Invoice)) == (0, 0)
    with services.session() as s:
        result = engine(services).run(s, PERIOD, actor=MANAGER, dry_run=False)
    assert not result.already_run and len(result.invoice_ids) == MEMBERS


# --------------------------------------------------------------------------- a real kill

_CHILD = textwrap.dedent("""
    import os, sys, time
    from datetime import date
    from sqlalchemy import event
    from finance import db
    from finance.authz import Actor
    from finance.billing import BillingEngine, BillingPolicy
    from finance.services import build_services
    from finance.settings import load_settings

    url, schema, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    ids = [int(i) for i in sys.argv[4].split(",")]
    args = {"options": f"-csearch_path={schema}"} if schema else None
    engine = db.make_engine(url, connect_args=args)
    services = build_services(load_settings(DESKBOOKS_DATA_DIR=os.path.dirname(marker)),
                              engine=engine)
    from finance import ledger
    real = ledger.post_entries

    def stall(*a, **kw):
        # numbers reserved, entries and lines inserted: announce it, then hang until killed
        ids = real(*a, **kw)
        open(marker, "w").write("posted")
        time.sleep(120)
        return ids

    ledger.post_entries = stall
    with services.session() as s:
        BillingEngine(services.chart, BillingPolicy()).issue(
            s, ids, actor=Actor("UMGR", "T1"), on=date(2026, 3, 1))
    print("finished without being killed")
""")


def _child_target(services: Any) -> tuple[str, str]:
    url = services.engine.url.render_as_string(hide_password=False)
    if services.engine.dialect.name != "postgresql":
        return url, ""
    with services.engine.connect() as conn:
        return url, conn.execute(text("SELECT current_schema()")).scalar_one()


@pytest.mark.slow
def test_sigkill_during_issue_loses_nothing_and_rerun_completes(services, approved, tmp_path):
    """A process SIGKILLed mid-issue (entries inserted, not committed) leaves the books as
    before; the rerun numbers every invoice once."""
    before = snapshot(services)
    marker = tmp_path / "posted.flag"
    url, schema = _child_target(services)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORT_DISABLE_TELEMETRY": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, schema, str(marker), ",".join(map(str, approved))],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the posting step"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    if services.engine.dialect.name == "postgresql":  # the server notices the dead backend
        _wait_for_backend_gone(services)
    assert snapshot(services) == before
    with services.session() as s:
        assert engine(services).issue(s, approved, actor=MANAGER, on=ISSUE_ON) == approved
    assert_books_sound(services, approved)


def _wait_for_backend_gone(services: Any) -> None:
    """Wait until no other session holds locks on this schema's invoices (killed client)."""
    deadline = time.monotonic() + 30
    with services.engine.connect() as conn:
        while time.monotonic() < deadline:
            busy = conn.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'invoice' AND c.relnamespace = current_schema()::regnamespace "
                "AND l.pid <> pg_backend_pid()")).scalar_one()
            conn.rollback()
            if not busy:
                return
            time.sleep(0.1)


# --------------------------------------------------------------------------- concurrency


def _at_once(*jobs: Any, timeout: float = 60) -> tuple[list[Any], list[BaseException]]:
    """Run callables in threads released together; (results, errors)."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(job: Any) -> None:
        try:
            barrier.wait(timeout=10)
            out = job()
            with lock:
                results.append(out)
        except BaseException as exc:  # collected and asserted by the caller
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return results, errors


def test_two_issuers_of_the_same_invoices_at_once_issue_each_once(services, approved):
    """Two people issuing the same approved run at once: one issues all, the other none."""

    def issue() -> list[int]:
        with services.session() as s:
            return engine(services).issue(s, approved, actor=MANAGER, on=ISSUE_ON)

    results, errors = _at_once(issue, issue)
    assert errors == []
    assert sorted(len(r) for r in results) == [0, MEMBERS]
    assert_books_sound(services, approved)


def test_disjoint_issues_at_once_get_disjoint_gapless_numbers(services, approved):
    """Three issuers of different invoices at once: numbers 1..N, each once, no gaps."""
    parts = [approved[0::3], approved[1::3], approved[2::3]]

    def issuer(ids: list[int]) -> Any:
        def issue() -> list[int]:
            with services.session() as s:
                return engine(services).issue(s, ids, actor=MANAGER, on=ISSUE_ON)
        return issue

    results, errors = _at_once(*(issuer(p) for p in parts))
    assert errors == []
    assert sorted(i for r in results for i in r) == sorted(approved)
    assert_books_sound(services, approved)
    with services.session() as s:  # each issuer's numbers are one consecutive block
        for part in parts:
            nums = sorted(int(s.get(Invoice, i).number.rsplit("-", 1)[1]) for i in part)
            assert nums == list(range(nums[0], nums[0] + len(part)))


def test_whole_space_and_one_location_runs_at_once_bill_each_member_once(services, space):
    """Runs for 'all' and for one location started together never bill a member twice; a
    loser that collides is refused with a clear error or bills nothing."""
    with services.session() as s:
        other = add_location(s, "RS")
        for i in range(4):
            add_member(s, f"R-{i}", f"Riverside {i}", plan_id=space["plans"]["hot"],
                       location_id=other, start=date(2026, 3, 1), price_cents=30_000)

    def run(scope: str | None) -> Any:
        def go() -> Any:
            with services.session() as s:
                return engine(services).run(s, PERIOD, actor=MANAGER, location_code=scope,
                                            dry_run=False)
        return go

    results, errors = _at_once(run(None), run("DT"))
    for exc in errors:  # the only acceptable failure: a domain error naming the collision
        assert isinstance(exc, BillingError), repr(exc)
    with services.session() as s:
        keys = [inv.idempotency_key for inv in all_rows(s, Invoice)]
        assert len(keys) == len(set(keys))
    with services.session() as s:  # whatever happened, a rerun of 'all' completes the month
        engine(services).run(s, PERIOD, actor=MANAGER, dry_run=False)
    with services.session() as s:
        members = [inv.member_id for inv in all_rows(s, Invoice)]
        assert len(members) == len(set(members)) == MEMBERS + 4
