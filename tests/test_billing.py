"""The billing engine on SQLite and PostgreSQL: runs, prorations, usage, tax, issue, postings."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from finance import ledger
from finance.authz import Actor, NotAuthorized
from finance.billing import BillingEngine, BillingPolicy
from finance.models import Invoice, InvoiceLine, UsageEvent
from finance.subscriptions import change_plan, quote_change
from finance.usage import UsageIn, ingest_usage
from tests.helpers import add_member, all_rows, build_space, count

SYSTEM = Actor.system("test")
MANAGER = Actor("UMGR", "T1")
POLICY = BillingPolicy()


@pytest.fixture
def space(services):
    with services.session() as s:
        info = build_space(s, services.settings.knowledge_path)
    return info


def engine(services) -> BillingEngine:
    return BillingEngine(services.chart, POLICY)


def lines_of(s, invoice_id: int) -> list[InvoiceLine]:
    return list(s.execute(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
                          .order_by(InvoiceLine.id)).scalars())


def run_and_issue(services, period: str, on: date, actor: Actor = MANAGER) -> list[int]:
    eng = engine(services)
    with services.session() as s:
        result = eng.run(s, period, actor=actor, dry_run=False)
        eng.approve(s, result.invoice_ids, actor=actor)
        return eng.issue(s, result.invoice_ids, actor=actor, on=on)


def test_mid_month_join_is_prorated_then_billed_in_advance(services, space):
    """Joining Mar 11 on $600: April's invoice has 21/31 of March and all of April."""
    with services.session() as s:
        add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["ded"],
                   location_id=space["location"], start=date(2026, 3, 11), price_cents=60_000)
    with services.session() as s:
        drafts = engine(services).compute(s, "2026-04")
    (inv,) = drafts
    amounts = sorted((line.kind, line.amount_cents) for line in inv.lines)
    assert amounts == [("membership", 60_000), ("proration", 40_645)]  # 21/31 x 600 = 406.45
    proration_line = next(line for line in inv.lines if line.kind == "proration")
    assert proration_line.account_code == "4050"
    assert (proration_line.service_start, proration_line.service_end) == (
        date(2026, 3, 11), date(2026, 3, 31))
    assert "21/31" in proration_line.description


def test_design_worked_example_quote_equals_the_invoice(services, space):
    """$600 -> $900 on Mar 11: quote -406.45 / +609.68 and the April invoice says the same."""
    with services.session() as s:
        add_member(s, "M-1", "Bluebird Labs", plan_id=space["plans"]["ded"],
                   location_id=space["location"], start=date(2026, 1, 1), price_cents=60_000)
    run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        quote = quote_change(s, member="Bluebird", to_plan="Private Office",
                             on=date(2026, 3, 11), policy=POLICY)
        assert [line.amount_cents for line in quote.proration.lines] == [-40_645, 60_968]
        assert quote.proration.net_cents == 20_323
        assert quote.direction == "upgrade"
        change_plan(s, member="M-1", to_plan="OFF", on=date(2026, 3, 11), policy=POLICY,
                    actor=MANAGER)
    with services.session() as s:
        (inv,) = engine(services).compute(s, "2026-04")
    prorations = sorted(line.amount_cents for line in inv.lines if line.kind == "proration")
    assert prorations == sorted(line.amount_cents for line in quote.proration.lines)
    advance = [line for line in inv.lines if line.kind == "membership"]
    assert [line.amount_cents for line in advance] == [90_000]
    assert advance[0].account_code == "4020"
    deposit = [line for line in inv.lines if line.kind == "deposit"]
    assert deposit == []  # a plan change is not a new subscription: no second deposit


def test_downgrade_waits_for_period_end_with_no_proration(services, space):
    """A downgrade on Mar 11 produces no lines and starts the cheaper plan on Apr 1."""
    with services.session() as s:
        add_member(s, "M-1", "Northwind Studio", plan_id=space["plans"]["ded"],
                   location_id=space["location"], start=date(2026, 1, 1), price_cents=60_000)
    run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        quote, new = change_plan(s, member="M-1", to_plan="Hot Desk", on=date(2026, 3, 11),
                                 policy=POLICY, actor=MANAGER)
        assert quote.proration.lines == () and quote.effective == date(2026, 4, 1)
        assert new.start_date == date(2026, 4, 1)
    with services.session() as s:
        (inv,) = engine(services).compute(s, "2026-04")
    assert [(line.kind, line.amount_cents) for line in inv.lines] == [("membership", 30_000)]


def test_issue_numbers_posts_and_keeps_the_trial_balance_zero(services, space):
    """Issued invoices get gap-free numbers, post AR = revenue + tax, and balance."""
    with services.session() as s:
        for i in range(3):
            add_member(s, f"M-{i}", f"Member {i}", plan_id=space["plans"]["office"],
                       location_id=space["location"], start=date(2026, 3, 1),
                       price_cents=90_000)
    ids = run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        invoices = [s.get(Invoice, i) for i in ids]
        assert [inv.number for inv in invoices] == [
            "INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
        for inv in invoices:
            assert inv.status == "open" and inv.due_date == date(2026, 3, 15)
            assert inv.total_cents == 90_000 + 90_000  # membership + deposit, office untaxed here
        assert ledger.balance(s, "1100") == 3 * 180_000
        assert ledger.balance(s, "4020") == -3 * 90_000
        assert ledger.balance(s, "2300") == -3 * 90_000
        assert ledger.trial_balance(s).is_balanced
    # a second run of the same month creates nothing and numbers never restart
    with services.session() as s:
        again = engine(services).run(s, "2026-03", actor=MANAGER, dry_run=False)
        assert again.already_run and again.invoices == ()
    ids2 = run_and_issue(services, "2026-04", date(2026, 4, 1))
    with services.session() as s:
        assert s.get(Invoice, ids2[0]).number == "INV-2026-000004"


def test_usage_and_bookings_are_billed_in_arrears_once_with_tax(services, space):
    """March print and coffee land on the April invoice, taxed; April events wait; reruns skip."""
    with services.session() as s:
        add_member(s, "M-1", "Priya Shah", plan_id=space["plans"]["hot"],
                   location_id=space["location"], start=date(2026, 3, 1), price_cents=30_000)
    ny = lambda d, h: datetime(2026, d // 100, d % 100, h, tzinfo=UTC)  # noqa: E731
    events = [
        UsageIn(source="pos", external_id="c1", member="M-1", location="DT", kind="coffee",
                quantity=3, unit_price_cents=450, occurred_at=ny(305, 15)),
        UsageIn(source="printer", external_id="p1", member="M-1", location="DT", kind="print",
                quantity=120, unit_price_cents=10, occurred_at=ny(320, 15)),
        UsageIn(source="door", external_id="d1", member="M-1", location="DT",
                kind="door_access", quantity=14, occurred_at=ny(321, 15)),
        # 2026-04-01 02:00 UTC is still March 31 in New York: billed in April's run
        UsageIn(source="pos", external_id="c2", member="M-1", location="DT", kind="coffee",
                quantity=1, unit_price_cents=450, occurred_at=ny(401, 2)),
        # 2026-04-01 05:00 UTC is April 1 in New York: waits for May
        UsageIn(source="pos", external_id="c3", member="M-1", location="DT", kind="coffee",
                quantity=2, unit_price_cents=450, occurred_at=ny(401, 5)),
    ]
    with services.session() as s:
        report = ingest_usage(s, events, actor="pos")
        assert (report.accepted, report.duplicates, report.rejected) == (5, 0, [])
        assert ingest_usage(s, events[:2], actor="pos").duplicates == 2
    run_and_issue(services, "2026-03", date(2026, 3, 1))
    ids = run_and_issue(services, "2026-04", date(2026, 4, 1))
    with services.session() as s:
        lines = {line.kind: line for line in lines_of(s, ids[0])}
        assert lines["food_beverage"].amount_cents == 4 * 450
        assert lines["food_beverage"].tax_cents == 160  # 8.875% of 18.00 = 1.5975 -> 1.60
        assert lines["printing"].amount_cents == 1_200
        assert "door_access" not in {line.kind for line in lines_of(s, ids[0])}
        assert ledger.balance(s, "2100") == -(160 + 107)  # printing 8.875% of 12.00 = 1.065
        waiting = s.execute(select(UsageEvent).where(UsageEvent.external_id == "c3")).scalar_one()
        assert waiting.invoice_line_id is None
    with services.session() as s:
        (may,) = engine(services).compute(s, "2026-05")
        assert [line.quantity for line in may.lines if line.kind == "food_beverage"] == [2]


def test_usage_ingestion_rejects_bad_events_with_reasons(services, space):
    """Unknown members, negative quantities and naive times are rejected, each with a reason."""
    with services.session() as s:
        add_member(s, "M-1", "Priya Shah", plan_id=space["plans"]["hot"],
                   location_id=space["location"], start=date(2026, 3, 1), price_cents=30_000)
        at = datetime(2026, 3, 5, 12, tzinfo=UTC)
        report = ingest_usage(s, [
            UsageIn(source="pos", external_id="a", member="M-404", location="DT", kind="coffee",
                    quantity=1, occurred_at=at),
            UsageIn(source="pos", external_id="b", member="M-1", location="DT", kind="coffee",
                    quantity=-2, occurred_at=at),
            UsageIn(source="pos", external_id="c", member="M-1", location="DT", kind="coffee",
                    quantity=1, occurred_at=datetime(2026, 3, 5, 12)),
            UsageIn(source="pos", external_id="d", member="M-1", location="XX", kind="coffee",
                    quantity=1, occurred_at=at),
            UsageIn(source="pos", external_id="e", member="M-1", location="DT", kind="coffee",
                    quantity=1, occurred_at=at),
        ], actor="pos")
        reasons = [r.reason for r in report.rejected]
        assert report.accepted == 1
        assert "unknown member 'M-404'" in reasons[0]
        assert "negative" in reasons[1]
        assert "time zone" in reasons[2]
        assert "unknown location" in reasons[3]
        assert count(s, UsageEvent) == 1


def test_yearly_plan_defers_revenue_and_recognizes_it_monthly(services, space):
    """$6,000/year issued Mar 1: $509.59 now, the rest in 2200, recognized month by month."""
    from finance.receivables import recognize_revenue

    with services.session() as s:
        add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["yearly"],
                   location_id=space["location"], start=date(2026, 3, 1), price_cents=600_000)
    run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        deferred = -ledger.balance(s, "2200")
        march = -ledger.balance(s, "4010")
        assert march + deferred == 600_000
        assert march == 50_959  # 31 of 365 days
        assert recognize_revenue(s, date(2026, 3, 31), actor=SYSTEM) == 0
        assert recognize_revenue(s, date(2026, 6, 15), actor=SYSTEM) == 3  # Apr, May, Jun
        assert recognize_revenue(s, date(2026, 6, 15), actor=SYSTEM) == 0  # idempotent
        assert recognize_revenue(s, date(2027, 3, 1), actor=SYSTEM) == 8  # Jul..Feb
        assert ledger.balance(s, "2200") == 0
        assert -ledger.balance(s, "4010") == 600_000
        assert ledger.trial_balance(s).is_balanced


def test_payments_credit_notes_voids_and_member_credit(services, space):
    """Payments settle invoices; overpayment becomes credit applied to the next invoice."""
    from finance.receivables import issue_credit_note, record_payment, void_invoice

    with services.session() as s:
        member_id, _ = add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["hot"],
                                  location_id=space["location"], start=date(2026, 3, 1),
                                  price_cents=30_000)
    (march,) = run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        record_payment(s, member_id=member_id, location_id=space["location"],
                       amount_cents=35_000, method="card", received_on=date(2026, 3, 4),
                       actor=MANAGER, external_id="ch_1")
        record_payment(s, member_id=member_id, location_id=space["location"],
                       amount_cents=35_000, method="card", received_on=date(2026, 3, 4),
                       actor=MANAGER, external_id="ch_1")  # a retried webhook: no-op
        assert s.get(Invoice, march).status == "paid"
        assert ledger.balance(s, "1100", member_id=member_id) == -5_000  # $50 credit
    (april,) = run_and_issue(services, "2026-04", date(2026, 4, 1))
    with services.session() as s:
        inv = s.get(Invoice, april)
        assert inv.credit_applied_cents == 5_000 and inv.status == "open"
        note = issue_credit_note(s, april, amount_cents=10_000, reason="AC broken for a week",
                                 on=date(2026, 4, 10), actor=MANAGER)
        assert note.number == "CN-2026-000001"
        assert s.get(Invoice, april).credit_applied_cents == 15_000
        with pytest.raises(ValueError, match="credit note instead"):
            void_invoice(s, april, reason="x", on=date(2026, 4, 10), actor=MANAGER)
        assert ledger.trial_balance(s).is_balanced
    (may,) = run_and_issue(services, "2026-05", date(2026, 5, 1))
    with services.session() as s:
        void_invoice(s, may, reason="billed by mistake", on=date(2026, 5, 2), actor=MANAGER)
        assert s.get(Invoice, may).status == "void"
        assert ledger.balance(s, "1100", member_id=member_id) == 30_000 - 5_000 - 10_000
        assert ledger.trial_balance(s).is_balanced


def test_deposit_is_a_liability_and_refunds_against_it(services, space):
    """A private-office deposit credits 2300 and its refund debits 2300, never revenue."""
    from finance.models import Deposit
    from finance.receivables import refund_deposit

    with services.session() as s:
        add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["office"],
                   location_id=space["location"], start=date(2026, 3, 1), price_cents=90_000)
    run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        (dep,) = all_rows(s, Deposit)
        assert ledger.balance(s, "2300") == -90_000
        refund_deposit(s, dep.id, amount_cents=90_000, on=date(2026, 9, 30), actor=MANAGER)
        assert ledger.balance(s, "2300") == 0
        with pytest.raises(ValueError, match="not held"):
            refund_deposit(s, dep.id, amount_cents=1, on=date(2026, 9, 30), actor=MANAGER)


def test_cancellation_mid_month_credits_unused_days(services, space):
    """Leaving on Mar 20 (last day of service) credits Mar 21-31 on April's invoice."""
    with services.session() as s:
        _, sub_id = add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["hot"],
                               location_id=space["location"], start=date(2026, 1, 1),
                               price_cents=31_000)
    run_and_issue(services, "2026-03", date(2026, 3, 1))
    with services.session() as s:
        from finance.models import Subscription
        s.get(Subscription, sub_id).end_date = date(2026, 3, 20)
    with services.session() as s:
        (inv,) = engine(services).compute(s, "2026-04")
    assert [(line.kind, line.amount_cents) for line in inv.lines] == [("proration", -11_000)]


def test_dunning_stages(services):
    """Reminders at +3, +7 and +14 days past due, nothing before."""
    from finance.receivables import dunning_stage

    due = date(2026, 3, 15)
    assert [dunning_stage(due, date(2026, 3, d)) for d in (15, 17, 18, 21, 22, 28, 29, 31)] == [
        None, None, 3, 3, 7, 7, 14, 14]
    assert dunning_stage(None, due) is None


def test_only_finance_roles_can_run_or_issue(services, space):
    """Staff and unknown Slack users cannot run billing; the refusal names the roles."""
    with services.session() as s:
        with pytest.raises(NotAuthorized, match="manager"):
            engine(services).run(s, "2026-03", actor=Actor("USTAFF", "T1"), dry_run=False)
        with pytest.raises(NotAuthorized, match="not a known"):
            engine(services).run(s, "2026-03", actor=Actor("UEVIL", "T9"), dry_run=False)
        with pytest.raises(NotAuthorized):
            engine(services).run(s, "2026-03", actor=Actor("UMGR", "T-other"), dry_run=False)


def test_dry_run_writes_nothing(services, space):
    """A dry run shows the invoices but stores no draft and no run."""
    with services.session() as s:
        add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["hot"],
                   location_id=space["location"], start=date(2026, 3, 1), price_cents=30_000)
    with services.session() as s:
        result = engine(services).run(s, "2026-03", actor=MANAGER, dry_run=True)
        assert len(result.invoices) == 1 and result.total_cents == 30_000
        assert count(s, Invoice) == 0
    with services.session() as s:
        assert engine(services).run(s, "2026-03", actor=MANAGER, dry_run=False).invoice_ids


def test_two_concurrent_runs_create_one_set_of_invoices(services, space):
    """Two runs of the same month started at once (threads, own sessions) bill once."""
    import threading

    with services.session() as s:
        for i in range(40):
            add_member(s, f"M-{i}", f"Member {i}", plan_id=space["plans"]["hot"],
                       location_id=space["location"], start=date(2026, 3, 1), price_cents=30_000)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            with services.session() as s:
                results.append(engine(services).run(s, "2026-03", actor=MANAGER, dry_run=False))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(r.already_run for r in results) == [False, True]
    with services.session() as s:
        assert count(s, Invoice) == 40
        assert len({inv.idempotency_key for inv in all_rows(s, Invoice)}) == 40
