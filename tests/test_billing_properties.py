"""Properties of the billing engine: a quote always equals the invoice that follows it."""

from __future__ import annotations

from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance.authz import Actor
from finance.billing import BillingEngine, BillingPolicy
from finance.db import create_schema_fast, make_engine
from finance.ledger import sync_chart
from finance.models import Plan
from finance.proration import billing_period
from finance.services import build_services
from finance.settings import load_settings
from finance.subscriptions import change_plan, quote_change
from tests.helpers import add_member, build_space

MANAGER = Actor("UMGR", "T1")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    old_price=st.integers(min_value=1, max_value=500_000),
    new_price=st.integers(min_value=1, max_value=500_000),
    quantity=st.integers(min_value=1, max_value=6),
    new_quantity=st.integers(min_value=1, max_value=6),
    month=st.integers(min_value=1, max_value=12),
    day=st.integers(min_value=1, max_value=31),
    anchor=st.integers(min_value=1, max_value=31),
    rule=st.sampled_from(["actual_days", "kill_bill", "thirty_day"]),
    downgrade=st.sampled_from(["period_end", "immediate"]),
)
def test_quote_equals_the_invoice_lines(old_price, new_price, quantity, new_quantity, month,
                                        day, anchor, rule, downgrade):
    """For any prices, quantities, anchor, change day and rule, the next invoice's proration
    lines are exactly the quoted lines (amounts and tax)."""
    year = 2028  # a leap year, so February is covered too
    day = min(day, [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1])
    change = date(year, month, day)
    svc = build_services(load_settings(), engine=make_engine("sqlite://"))
    create_schema_fast(svc.engine)
    policy = BillingPolicy(rule=rule, downgrade=downgrade)
    with svc.session() as s:
        sync_chart(s, svc.chart)
        space = build_space(s, svc.settings.knowledge_path)
        plan = s.get(Plan, space["plans"]["ded"])
        plan.price_cents = new_price
        add_member(s, "M-1", "Acme Design", plan_id=space["plans"]["hot"],
                   location_id=space["location"], start=date(2027, 1, anchor if anchor <= 28 else 28),
                   price_cents=old_price, quantity=quantity, anchor=anchor)
    engine = BillingEngine(svc.chart, policy)
    # the period holding the change was billed in advance before the change was made
    billed_from = billing_period(anchor, change).start
    with svc.session() as s:
        run = engine.run(s, f"{billed_from:%Y-%m}", actor=MANAGER, dry_run=False)
        engine.approve(s, run.invoice_ids, actor=MANAGER)
        engine.issue(s, run.invoice_ids, actor=MANAGER, on=billed_from)
    with svc.session() as s:
        quote = quote_change(s, member="M-1", to_plan="Dedicated Desk", on=change,
                             policy=policy, quantity=new_quantity)
        _, new_sub = change_plan(s, member="M-1", to_plan="Dedicated Desk", on=change,
                                 policy=policy, actor=MANAGER, quantity=new_quantity)
    # the proration lands on the run for the month after the change
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    with svc.session() as s:
        drafts = engine.compute(s, f"{nxt.year:04d}-{nxt.month:02d}")
        sub_ids = {new_sub.id, new_sub.replaces_id}
        got = sorted((line.amount_cents, line.tax_cents) for d in drafts for line in d.lines
                     if line.kind == "proration" and line.subscription_id in sub_ids
                     and line.service_start <= change <= line.service_end)
    want = sorted((line.amount_cents, line.tax_cents) for line in quote.proration.lines
                  if line.amount_cents)  # zero-cent fractions are not billed
    if quote.effective != change:  # a downgrade deferred to the period end: nothing prorated
        assert quote.proration.lines == () and got == []
    else:
        assert got == want
    svc.dispose()
