"""Usage in billing runs on SQLite and PostgreSQL: grouped by the database, linked to its lines
by one set-based UPDATE, every event billed exactly once; and the bulk helpers under it."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from finance import ledger
from finance.authz import Actor
from finance.billing import USAGE_LINE_KINDS, BillingEngine, BillingError, BillingPolicy
from finance.bulk import id_ranges, insert_rows, insert_tuples, update_rows, where_ids
from finance.models import (
    BillingRun,
    Invoice,
    InvoiceLine,
    JournalEntry,
    Location,
    UsageEvent,
)
from finance.usage import UsageIn, ingest_usage
from tests.helpers import add_location, add_member, build_space, count

MANAGER = Actor("UMGR", "T1")
# the instant April starts at each location (billed in April's run when before it)
CUTOFF = {"DT": datetime(2026, 4, 1, 4, tzinfo=UTC), "UT": datetime(2026, 4, 1, 7, tzinfo=UTC)}
LINE_TO_USAGE = {spec[0]: kind.value for kind, spec in USAGE_LINE_KINDS.items()}


@pytest.fixture
def space(services):
    with services.session() as s:
        info = build_space(s, services.settings.knowledge_path)
        info["ut"] = add_location(s, "UT", "America/Los_Angeles")
    return info


def engine(services) -> BillingEngine:
    return BillingEngine(services.chart, BillingPolicy())


def seed_usage(services, space, members: int = 12, events: int = 400, seed: int = 5) -> None:
    """Members at two time zones with print / coffee (two prices) / day-pass / door events,
    some with zero quantity, spread over March and the first hours of April."""
    rng = random.Random(seed)
    with services.session() as s:
        for i in range(members):
            loc = space["location"] if i % 2 else space["ut"]
            add_member(s, f"M-{i}", f"Member {i}", plan_id=space["plans"]["hot"],
                       location_id=loc, start=date(2026, 1, 1), price_cents=30_000)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    kinds = [("print", 10), ("coffee", 450), ("coffee", 395), ("day_pass", 2_500),
             ("door_access", 0)]
    batch = []
    for n in range(events):
        i = rng.randrange(members)
        kind, price = rng.choice(kinds)
        at = start + timedelta(minutes=rng.randrange(60 * 24 * 32))  # into April 2
        batch.append(UsageIn(source="test", external_id=f"e{n}", member=f"M-{i}",
                             location="DT" if i % 2 else "UT", kind=kind,
                             quantity=rng.choice([0, 1, 1, 2, 7]), unit_price_cents=price,
                             occurred_at=at))
    with services.session() as s:
        report = ingest_usage(s, batch, actor="test")
        assert report.rejected == []


def billable_before_cutoff(s) -> set[int]:
    codes = dict(s.execute(select(Location.id, Location.code)).all())
    return {e.id for e in s.execute(select(UsageEvent)).scalars()
            if e.kind in LINE_TO_USAGE.values() and e.quantity > 0
            and e.occurred_at < CUTOFF[codes[e.location_id]]}


def assert_lines_match_their_events(s) -> None:
    """Every usage line bills exactly the events that point at it, at its price."""
    linked: dict[int, list[UsageEvent]] = defaultdict(list)
    for e in s.execute(select(UsageEvent).where(UsageEvent.invoice_line_id.is_not(None))).scalars():
        linked[e.invoice_line_id].append(e)
    usage_lines = s.execute(select(InvoiceLine, Invoice.member_id)
                            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                            .where(InvoiceLine.kind.in_(list(LINE_TO_USAGE)))).all()
    assert {line.id for line, _ in usage_lines} == set(linked)
    for line, member_id in usage_lines:
        events = linked[line.id]
        assert {(e.member_id, e.location_id, e.kind, e.unit_price_cents) for e in events} == {
            (member_id, line.location_id, LINE_TO_USAGE[line.kind], line.unit_price_cents)}
        qty = sum(e.quantity for e in events)
        assert line.quantity == qty and line.amount_cents == qty * line.unit_price_cents
        assert line.service_start == min(e.occurred_at for e in events).date()
        assert line.service_end == max(e.occurred_at for e in events).date()


def test_every_usage_event_is_billed_exactly_once(services, space):
    """April's run links exactly the billable events before each location's cutoff, each line
    bills just its events, and the drafts name the same event ids as the database."""
    seed_usage(services, space)
    with services.session() as s:
        result = engine(services).run(s, "2026-04", actor=MANAGER, dry_run=False)
    with services.session() as s:
        want = billable_before_cutoff(s)
        got = set(s.execute(select(UsageEvent.id)
                            .where(UsageEvent.invoice_line_id.is_not(None))).scalars())
        assert got == want and len(want) > 100
        assert_lines_match_their_events(s)
        by_line = defaultdict(set)
        for event_id, line_id in s.execute(select(UsageEvent.id, UsageEvent.invoice_line_id)
                                           .where(UsageEvent.invoice_line_id.is_not(None))):
            by_line[line_id].add(event_id)
        drafted = sorted(sorted(line.usage_event_ids) for inv in result.invoices
                         for line in inv.lines if line.usage_event_ids)
        assert drafted == sorted(sorted(ids) for ids in by_line.values())


def test_rerun_and_next_month_bill_nothing_twice(services, space):
    """A second April run creates nothing; May's run bills only what April left (April events
    and zero quantities stay unbilled forever, door access is never billed)."""
    seed_usage(services, space)
    eng = engine(services)
    with services.session() as s:
        first = eng.run(s, "2026-04", actor=MANAGER, dry_run=False)
    with services.session() as s:
        again = eng.run(s, "2026-04", actor=MANAGER, dry_run=False)
        assert again.already_run and again.invoice_ids == ()
        assert count(s, Invoice) == len(first.invoice_ids)
        april = set(s.execute(select(UsageEvent.id, UsageEvent.invoice_line_id)).all())
    with services.session() as s:
        eng.run(s, "2026-05", actor=MANAGER, dry_run=False)
    with services.session() as s:
        after = dict(s.execute(select(UsageEvent.id, UsageEvent.invoice_line_id)).all())
        assert all(after[e] == line for e, line in april if line is not None)  # unchanged
        for e in s.execute(select(UsageEvent)).scalars():
            billable = e.kind in LINE_TO_USAGE.values() and e.quantity > 0
            assert (e.invoice_line_id is not None) == billable
        assert_lines_match_their_events(s)


def test_location_run_then_full_run_link_each_event_once(services, space):
    """A run for one location, then one for all: no invoice twice, every event on one line."""
    seed_usage(services, space)
    eng = engine(services)
    with services.session() as s:
        eng.run(s, "2026-04", actor=MANAGER, location_code="UT", dry_run=False)
    with services.session() as s:
        ut_only = count(s, Invoice)
        assert {inv.location_id for inv in s.execute(select(Invoice)).scalars()} == {space["ut"]}
        eng.run(s, "2026-04", actor=MANAGER, dry_run=False)
    with services.session() as s:
        keys = list(s.execute(select(Invoice.idempotency_key)).scalars())
        assert len(keys) == len(set(keys)) > ut_only
        assert set(s.execute(select(UsageEvent.id)
                             .where(UsageEvent.invoice_line_id.is_not(None))).scalars()) == (
            billable_before_cutoff(s))
        assert_lines_match_their_events(s)


def test_usage_arriving_during_a_run_fails_it_whole(services, space, monkeypatch):
    """An event that appears between computing and linking makes the run fail with a reason,
    and nothing of it is kept; the rerun then bills the new event too."""
    seed_usage(services, space, members=4, events=60)
    original = BillingEngine.compute

    def compute_then_event_arrives(self, session, period, **kw):
        drafts = original(self, session, period, **kw)
        ingest_usage(session, [UsageIn(
            source="late", external_id="x1", member="M-1", location="DT", kind="print",
            quantity=5, unit_price_cents=10, occurred_at=datetime(2026, 3, 30, tzinfo=UTC))],
            actor="late")
        return drafts

    monkeypatch.setattr(BillingEngine, "compute", compute_then_event_arrives)
    with pytest.raises(BillingError, match="usage changed while the 2026-04 run"):
        with services.session() as s:
            engine(services).run(s, "2026-04", actor=MANAGER, dry_run=False)
    with services.session() as s:
        assert (count(s, Invoice), count(s, InvoiceLine), count(s, BillingRun)) == (0, 0, 0)
        assert s.execute(select(UsageEvent.id).where(
            UsageEvent.invoice_line_id.is_not(None))).first() is None
    monkeypatch.setattr(BillingEngine, "compute", original)
    with services.session() as s:
        engine(services).run(s, "2026-04", actor=MANAGER, dry_run=False)
    with services.session() as s:
        assert_lines_match_their_events(s)


def test_concurrent_runs_never_bill_an_event_twice(services, space):
    """Two runs of the same month and one of the next started at once (threads, own
    sessions): the month is drafted once, and no line bills an event another line holds."""
    seed_usage(services, space, members=10, events=300)
    barrier = threading.Barrier(3)
    results, errors = [], []

    def worker(period: str) -> None:
        try:
            barrier.wait(timeout=10)
            with services.session() as s:
                results.append(engine(services).run(s, period, actor=MANAGER, dry_run=False))
        except BillingError as exc:  # a run that lost the race on usage fails whole
            errors.append(exc)
        except Exception as exc:  # anything else is a failure, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,))
               for p in ("2026-04", "2026-04", "2026-05")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(isinstance(e, BillingError) for e in errors), errors
    assert sum(1 for r in results if r.period == "2026-04" and not r.already_run) <= 1
    with services.session() as s:
        keys = list(s.execute(select(Invoice.idempotency_key)).scalars())
        assert len(keys) == len(set(keys))
        assert_lines_match_their_events(s)


def test_issue_posts_one_balanced_entry_per_invoice(services, space):
    """Issuing the drafted usage posts one entry per invoice whose receivable equals the total."""
    seed_usage(services, space, members=6, events=120)
    eng = engine(services)
    with services.session() as s:
        run = eng.run(s, "2026-04", actor=MANAGER, dry_run=False)
        eng.approve(s, run.invoice_ids, actor=MANAGER)
        issued = eng.issue(s, run.invoice_ids, actor=MANAGER, on=date(2026, 4, 1))
    assert sorted(issued) == sorted(run.invoice_ids)
    with services.session() as s:
        assert count(s, JournalEntry) == len(issued)
        assert ledger.trial_balance(s).is_balanced
        total = sum(inv.total_cents for inv in s.execute(select(Invoice)).scalars())
        assert ledger.balance(s, "1100") == total


# --------------------------------------------------------------------------- bulk helpers


def test_insert_tuples_stores_what_core_would(services, space):
    """Driver-level inserts keep dates, decimals, aware times and column defaults as Core does."""
    with services.session() as s:
        sub_member, _ = add_member(s, "M-X", "X", plan_id=space["plans"]["hot"],
                                   location_id=space["location"], start=date(2026, 1, 1),
                                   price_cents=1)
        inv_ids = insert_rows(s, Invoice, [
            {"member_id": sub_member, "location_id": space["location"], "status": "draft",
             "subtotal_cents": 5, "tax_cents": 0, "total_cents": 5, "credit_applied_cents": 0,
             "amount_paid_cents": 0, "currency": "USD"}] * 3)
        row = {"invoice_id": inv_ids[0], "kind": "printing", "description": "p",
               "quantity": Decimal("2.5"), "unit_price_cents": 2, "amount_cents": 5,
               "tax_rate_ppm": 0, "tax_cents": 0, "account_code": "4200", "deferred_cents": 0,
               "location_id": space["location"], "service_start": date(2026, 3, 1),
               "service_end": date(2026, 3, 31)}
        (fast,) = insert_rows(s, InvoiceLine, [row])
        core = InvoiceLine(**row)
        s.add(core)
        s.flush()
        at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
        insert_tuples(s.connection(), UsageEvent.__table__,
                      ["source", "external_id", "member_id", "location_id", "kind", "quantity",
                       "unit_price_cents", "occurred_at"],
                      [("t", "a", sub_member, space["location"], "print", 1, 10, at)])
    with services.session() as s:
        a, b = s.get(InvoiceLine, fast), s.get(InvoiceLine, core.id)
        cols = ["quantity", "service_start", "service_end", "amount_cents", "description"]
        assert [getattr(a, c) for c in cols] == [getattr(b, c) for c in cols]
        assert a.quantity == Decimal("2.5") and a.service_end == date(2026, 3, 31)
        event = s.execute(select(UsageEvent).where(UsageEvent.external_id == "a")).scalar_one()
        assert event.occurred_at == at and event.received_at is not None  # column default
        assert s.execute(select(UsageEvent.occurred_at).where(
            UsageEvent.occurred_at < at + timedelta(seconds=1),
            UsageEvent.occurred_at >= at)).scalar_one() == at  # compares as Core-bound values
        assert all(s.get(Invoice, i).created_at is not None for i in inv_ids)


def test_where_ids_matches_exactly_the_ids(services, space):
    """Range conditions select exactly the given ids, gaps and singletons included."""
    assert id_ranges([5, 1, 2, 3, 9, 7, 8, 3]) == [(1, 3), (5, 5), (7, 9)]
    with services.session() as s:
        ids = insert_rows(s, Invoice, [
            {"member_id": add_member(s, "M-R", "R", plan_id=space["plans"]["hot"],
                                     location_id=space["location"], start=date(2026, 1, 1),
                                     price_cents=1)[0],
             "location_id": space["location"], "status": "draft", "subtotal_cents": 0,
             "tax_cents": 0, "total_cents": 0, "credit_applied_cents": 0,
             "amount_paid_cents": 0, "currency": "USD"}] * 1)
        more = insert_rows(s, Invoice, [
            {"member_id": s.get(Invoice, ids[0]).member_id, "location_id": space["location"],
             "status": "draft", "subtotal_cents": 0, "tax_cents": 0, "total_cents": 0,
             "credit_applied_cents": 0, "amount_paid_cents": 0, "currency": "USD"}
            for _ in range(30)])
        every = ids + more
        wanted = every[::3] + every[4:9]
        got = set()
        for cond in where_ids(Invoice.id, wanted, per_statement=2):
            got |= set(s.execute(select(Invoice.id).where(cond)).scalars())
        assert got == set(wanted)


def test_update_rows_large_batch_after_a_rolled_back_one(services, space):
    """The temporary-table UPDATE works again on the same connection after a rollback."""
    with services.session() as s:
        member, _ = add_member(s, "M-U", "U", plan_id=space["plans"]["hot"],
                               location_id=space["location"], start=date(2026, 1, 1),
                               price_cents=1)
        at = datetime(2026, 3, 2, tzinfo=UTC)
        insert_tuples(s.connection(), UsageEvent.__table__,
                      ["source", "external_id", "member_id", "location_id", "kind", "quantity",
                       "unit_price_cents", "occurred_at"],
                      [("t", f"u{i}", member, space["location"], "print", 1, 10, at)
                       for i in range(2500)])
    with services.session() as s:
        ids = list(s.execute(select(UsageEvent.id).order_by(UsageEvent.id)).scalars())
        update_rows(s, UsageEvent, [{"b_id": i, "quantity": 3} for i in ids])
        s.rollback()
        update_rows(s, UsageEvent, [{"b_id": i, "quantity": 2 + i % 2} for i in ids])
    with services.session() as s:
        assert {i: 2 + i % 2 for i in ids} == dict(
            s.execute(select(UsageEvent.id, UsageEvent.quantity)).all())
