"""The ledger's rules, on SQLite and PostgreSQL: balance, reversal, locks, immutability."""

from __future__ import annotations

import random
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from finance import ledger
from finance.ledger import EntryDraft, Leg
from finance.models import AuditLog, JournalEntry
from tests.helpers import add_location, all_rows, count


def _sale(loc: int, cents: int = 10_000, day: date = date(2026, 3, 5), **kw: object) -> EntryDraft:
    return EntryDraft(day, "March membership", [Leg("1100", cents, loc), Leg("4000", -cents, loc)],
                      **kw)  # type: ignore[arg-type]


def test_balanced_entry_posts_and_updates_balances(services):
    """A balanced entry posts, writes an audit row and moves both account balances."""
    with services.session() as s:
        loc = add_location(s)
        entry = ledger.post_entry(s, _sale(loc), actor="U1")
        assert entry.id is not None
        assert ledger.balance(s, "1100") == 10_000
        assert ledger.balance(s, "4000") == -10_000
        assert count(s, AuditLog, entity_id=str(entry.id)) == 1


@pytest.mark.parametrize(
    "legs, message",
    [
        ([("1100", 10_000), ("4000", -9_999)], "does not balance"),
        ([("1100", 10_000)], "at least two"),
        ([("1100", 0), ("4000", 0)], "at least two"),
        ([("1100", 100), ("9999", -100)], "unknown account"),
    ],
)
def test_bad_entries_are_refused_and_nothing_is_written(services, legs, message):
    """Unbalanced, one-legged, empty or unknown-account entries are refused whole."""
    with services.session() as s:
        loc = add_location(s)
        draft = EntryDraft(date(2026, 3, 5), "bad", [Leg(a, c, loc) for a, c in legs])
        with pytest.raises(ledger.LedgerError, match=message):
            ledger.post_entry(s, draft, actor="U1")
        assert count(s, JournalEntry) == 0


def test_float_and_bool_amounts_are_refused(services):
    """Amounts must be integer cents: a float or a bool never reaches the ledger."""
    with services.session() as s:
        loc = add_location(s)
        for bad in (100.0, True):
            draft = EntryDraft(date(2026, 3, 5), "x", [Leg("1100", bad, loc), Leg("4000", -100, loc)])  # type: ignore[arg-type]
            with pytest.raises(ledger.LedgerError, match="integer cents"):
                ledger.post_entry(s, draft, actor="U1")


def test_unbalanced_in_one_currency_is_refused_even_if_totals_net(services):
    """Balance is checked per currency: +100 USD and -100 EUR do not balance."""
    with services.session() as s:
        loc = add_location(s)
        draft = EntryDraft(date(2026, 3, 5), "fx", [Leg("1100", 100, loc, currency="USD"),
                                                    Leg("4000", -100, loc, currency="EUR")])
        with pytest.raises(ledger.UnbalancedEntry, match="EUR"):
            ledger.post_entry(s, draft, actor="U1")


def test_reversal_mirrors_the_entry_and_happens_once(services):
    """A reversal posts the negated legs, nets balances to zero, and cannot repeat."""
    with services.session() as s:
        loc = add_location(s)
        entry = ledger.post_entry(s, _sale(loc), actor="U1")
        rev = ledger.reverse_entry(s, entry.id, on_date=date(2026, 3, 9), actor="U1",
                                   reason="billed the wrong member")
        assert rev.reverses_id == entry.id
        assert [leg.amount_cents for leg in ledger.entry_legs(s, rev.id)] == [-10_000, 10_000]
        assert ledger.balance(s, "1100") == 0
        with pytest.raises(ledger.AlreadyReversed):
            ledger.reverse_entry(s, entry.id, on_date=date(2026, 3, 9), actor="U1", reason="again")
        with pytest.raises(ledger.LedgerError, match="itself a reversal"):
            ledger.reverse_entry(s, rev.id, on_date=date(2026, 3, 9), actor="U1", reason="undo")
        other = ledger.post_entry(s, _sale(loc), actor="U1")
        with pytest.raises(ledger.LedgerError, match="reason"):
            ledger.reverse_entry(s, other.id, on_date=date(2026, 3, 9), actor="U1", reason=" ")
        with pytest.raises(ledger.LedgerError, match="no journal entry"):
            ledger.reverse_entry(s, 12345, on_date=date(2026, 3, 9), actor="U1", reason="x")


def test_locked_period_refuses_postings_and_reversals_into_it(services):
    """Nothing posts into a locked month; the next month stays open; unlock is audited."""
    with services.session() as s:
        loc = add_location(s)
        entry = ledger.post_entry(s, _sale(loc), actor="U1")
        ledger.lock_period(s, "2026-03", actor="UCFO")
        with pytest.raises(ledger.PeriodLocked, match="2026-03"):
            ledger.post_entry(s, _sale(loc, day=date(2026, 3, 31)), actor="U1")
        with pytest.raises(ledger.PeriodLocked):
            ledger.reverse_entry(s, entry.id, on_date=date(2026, 3, 20), actor="U1", reason="x")
        ledger.reverse_entry(s, entry.id, on_date=date(2026, 4, 1), actor="U1", reason="x")
        assert ledger.unlock_period(s, "2026-03", actor="UCFO", reason="audit adjustment")
        ledger.post_entry(s, _sale(loc, day=date(2026, 3, 31)), actor="U1")
        actions = [a.action for a in all_rows(s, AuditLog, AuditLog.id)]
        assert "period.lock" in actions and "period.unlock" in actions
        with pytest.raises(ledger.LedgerError, match="YYYY-MM"):
            ledger.lock_period(s, "March", actor="UCFO")


def test_idempotency_key_returns_the_first_posting(services):
    """Posting twice with the same key posts once."""
    with services.session() as s:
        loc = add_location(s)
        a = ledger.post_entry(s, _sale(loc, idempotency_key="inv:1"), actor="U1")
        b = ledger.post_entry(s, _sale(loc, idempotency_key="inv:1"), actor="U1")
        assert a.id == b.id
        assert ledger.balance(s, "1100") == 10_000


def test_batch_posting_is_all_or_nothing(services):
    """One bad draft in a batch means no draft of the batch is posted."""
    with services.session() as s:
        loc = add_location(s)
        bad = EntryDraft(date(2026, 3, 5), "bad", [Leg("1100", 5, loc), Leg("4000", -4, loc)])
        with pytest.raises(ledger.UnbalancedEntry):
            ledger.post_entries(s, [_sale(loc), bad], actor="U1")
        assert count(s, JournalEntry) == 0


def test_trial_balance_stays_zero_over_many_random_postings(services):
    """Hundreds of random balanced multi-leg entries keep the trial balance at zero."""
    rng = random.Random(42)
    codes = ["1000", "1100", "2100", "2200", "4000", "4100", "5000", "6100"]
    with services.session() as s:
        locs = [add_location(s, "DT"), add_location(s, "RS", "America/Chicago")]
        drafts = []
        for i in range(300):
            amounts = [rng.randint(-500_000, 500_000) for _ in range(rng.randint(1, 4))]
            legs = [Leg(rng.choice(codes), a, rng.choice(locs)) for a in amounts if a]
            legs.append(Leg(rng.choice(codes), -sum(a for a in amounts), rng.choice(locs)))
            if sum(1 for leg in legs if leg.amount_cents) >= 2:
                drafts.append(EntryDraft(date(2026, 1 + i % 12, 1 + i % 28), f"e{i}", legs))
        ledger.post_entries(s, drafts, actor="U1", audit_each=False)
        tb = ledger.trial_balance(s)
        assert tb.is_balanced
        assert tb.total_debits == tb.total_credits > 0
        by_loc = [ledger.trial_balance(s, location_id=loc) for loc in locs]
        assert sum(sum(r.balance_cents for r in t.rows) for t in by_loc) == 0


def _refuses(s, sql: str) -> None:
    with pytest.raises((IntegrityError, DBAPIError)) as info:
        with s.begin_nested():
            s.execute(text(sql))
    assert "append-only" in str(info.value)


def test_posted_journal_rows_cannot_be_updated_or_deleted(services):
    """The database itself refuses UPDATE and DELETE on posted entries and lines."""
    with services.session() as s:
        loc = add_location(s)
        entry = ledger.post_entry(s, _sale(loc), actor="U1")
        _refuses(s, f"UPDATE journal_line SET amount_cents = 1 WHERE entry_id = {entry.id}")
        _refuses(s, f"DELETE FROM journal_line WHERE entry_id = {entry.id}")
        _refuses(s, f"UPDATE journal_entry SET memo = 'edited' WHERE id = {entry.id}")
        _refuses(s, f"DELETE FROM journal_entry WHERE id = {entry.id}")
        assert ledger.balance(s, "1100") == 10_000


def test_chart_sync_is_idempotent_and_complete(services):
    """Every account of the default chart is loaded once; a resync adds nothing."""
    with services.session() as s:
        assert ledger.sync_chart(s, services.chart) == 0
        codes = {a.code for a in all_rows(s, ledger.Account)}
    assert {"1000", "1100", "2200", "2300", "4050", "6400", "7100"} <= codes
    assert len(codes) == len(services.chart.accounts) == 50
    assert services.chart.revenue_account("membership", "private_office") == "4020"
    assert services.chart.revenue_account("food_beverage") == "4500"


def test_month_totals_follow_every_posting_and_reversal(services):
    """ledger_month_total equals a rebuild from the journal after posts and a reversal."""
    from sqlalchemy import select

    from finance.models import LedgerMonthTotal

    def snapshot(s):
        return sorted((r.account_id, r.location_id, r.currency, r.month, r.net_cents,
                       r.debit_cents, r.member_net_cents, r.member_debit_cents)
                      for r in s.execute(select(LedgerMonthTotal)).scalars())

    with services.session() as s:
        dt = add_location(s, "DT")
        from finance.models import Member

        m = Member(code="M-1", kind="person", name="Priya Shah")
        s.add(m)
        s.flush()
        ledger.post_entries(s, [
            EntryDraft(date(2026, 1, 31), "jan", [Leg("1100", 10_000, dt, member_id=m.id),
                                                  Leg("4000", -10_000, dt)]),
            EntryDraft(date(2026, 2, 1), "feb", [Leg("1000", 10_000, dt),
                                                 Leg("1100", -10_000, dt, member_id=m.id)]),
        ], actor="U1")
        entry = ledger.post_entry(s, EntryDraft(date(2026, 2, 3), "x", [
            Leg("6100", 2_500, dt), Leg("1000", -2_500, dt)]), actor="U1")
        ledger.reverse_entry(s, entry.id, on_date=date(2026, 3, 1), actor="U1", reason="oops")
        kept = snapshot(s)
        assert len(kept) == 7  # Feb's two 1000 legs share one row
        assert ledger.rebuild_month_totals(s) == 7
        assert snapshot(s) == kept
