"""Plan changes and their quotes. The quote and the invoice come from the same engine.

A change on day D ends the old subscription on D-1 and starts the new one on D with the same
billing anchor, so the next billing run credits the old plan's unused part and charges the new
plan's remaining part with exactly the fractions and rounding the quote showed. A downgrade
waits for the period end unless the policy says ``immediate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlmodel import Session

from finance import audit
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.billing import BillingError, BillingPolicy, period_of_subscription, plan_item
from finance.models import LineKind, Member, Plan, Subscription
from finance.proration import PlanItem, Proration, prorate_change
from finance.summary import in_service_on
from finance.tax import TaxTable, ppm_to_percent


@dataclass(frozen=True)
class Quote:
    member_code: str
    member_name: str
    from_plan: str
    to_plan: str
    quantity: int
    change_date: date
    effective: date
    direction: str
    proration: Proration
    tax_rate_ppm: int

    def as_dict(self) -> dict[str, object]:
        return {
            "member": self.member_code,
            "member_name": self.member_name,
            "from_plan": self.from_plan,
            "to_plan": self.to_plan,
            "quantity": self.quantity,
            "change_date": self.change_date.isoformat(),
            "effective": self.effective.isoformat(),
            "direction": self.direction,
            "period": [self.proration.period.start.isoformat(),  # type: ignore[union-attr]
                       self.proration.period.end.isoformat()],  # type: ignore[union-attr]
            "rule": self.proration.rule,
            "lines": self.proration.to_rows(),
            "net_cents": self.proration.net_cents,
            "tax_cents": self.proration.tax_cents,
            "total_cents": self.proration.total_cents,
        }


def find_member(session: Session, text: str) -> Member:
    """A member by code, exact name, or a unique case-insensitive name prefix."""
    text = text.strip()
    member = session.execute(select(Member).where(Member.code == text)).scalar_one_or_none()
    if member:
        return member
    rows = list(session.execute(select(Member).where(Member.name.ilike(f"{text}%"))).scalars())  # type: ignore[attr-defined]
    exact = [m for m in rows if m.name.lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise BillingError(f"no member matches {text!r}")
    names = ", ".join(f"{m.name} ({m.code})" for m in rows[:5])
    raise BillingError(f"{text!r} matches several members: {names}; use the member code")


def find_plan(session: Session, text: str, location_id: int | None) -> Plan:
    """A plan by code or name; a location-specific plan wins over a shared one."""
    rows = list(session.execute(
        select(Plan).where(Plan.active.is_(True))  # type: ignore[attr-defined]
    ).scalars())
    wanted = text.strip().lower()
    hits = [p for p in rows if p.code.lower() == wanted or p.name.lower() == wanted]
    if not hits:
        hits = [p for p in rows if p.name.lower().startswith(wanted)
                or p.desk_type == wanted.replace(" ", "_")]
    local = [p for p in hits if p.location_id == location_id]
    hits = local or [p for p in hits if p.location_id is None] or hits
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise BillingError(f"no active plan matches {text!r}")
    raise BillingError(f"{text!r} matches several plans: "
                       + ", ".join(f"{p.name} ({p.code})" for p in hits[:5]))


def current_subscription(session: Session, member: Member, on: date) -> Subscription:
    subs = list(session.execute(
        select(Subscription).where(Subscription.member_id == member.id, in_service_on(on))
        .order_by(Subscription.start_date.desc())  # type: ignore[attr-defined]
    ).scalars())
    if not subs:
        raise BillingError(f"{member.name} has no subscription in service on {on}")
    if len(subs) > 1:
        raise BillingError(f"{member.name} has {len(subs)} subscriptions on {on}; "
                           "name the plan to change")
    return subs[0]


def quote_change(
    session: Session,
    *,
    member: str,
    to_plan: str,
    on: date,
    policy: BillingPolicy,
    quantity: int | None = None,
) -> Quote:
    """Price moving ``member`` to ``to_plan`` on ``on`` from their real subscription."""
    m = find_member(session, member)
    sub = current_subscription(session, m, on)
    old_plan = session.get(Plan, sub.plan_id)
    assert old_plan is not None
    new_plan = find_plan(session, to_plan, sub.location_id)
    if new_plan.interval != old_plan.interval:
        raise BillingError("changing between monthly and yearly plans is not prorated; "
                           "end the subscription and start a new one")
    qty = sub.quantity if quantity is None else quantity
    if qty < 1:
        raise BillingError("quantity must be at least 1")
    period = period_of_subscription(sub, old_plan, on)
    taxes = TaxTable.load(session)
    rate = taxes.rate_ppm(sub.location_id, LineKind.PRORATION, on)
    old = plan_item(old_plan, sub)
    new = PlanItem(new_plan.name, new_plan.price_cents, qty)
    result = prorate_change(old, new, period, on, rule=policy.rule,
                            tax_rate_percent=ppm_to_percent(rate), downgrade=policy.downgrade)
    from finance.proration import change_timing

    timing = change_timing(old, new, period, on, downgrade=policy.downgrade)
    effective = timing.effective
    return Quote(m.code, m.name, old_plan.name, new_plan.name, qty, on,
                 effective if isinstance(effective, date) else effective.date(),
                 timing.direction, result, rate)


def change_plan(
    session: Session,
    *,
    member: str,
    to_plan: str,
    on: date,
    policy: BillingPolicy,
    actor: Actor,
    quantity: int | None = None,
) -> tuple[Quote, Subscription]:
    """Carry out the quoted change: end the old subscription, start the new one."""
    require_role(session, actor, FINANCE_WRITERS, "change a member's plan")
    quote = quote_change(session, member=member, to_plan=to_plan, on=on, policy=policy,
                         quantity=quantity)
    m = find_member(session, member)
    old = current_subscription(session, m, on)
    new_plan = find_plan(session, to_plan, old.location_id)
    if old.end_date is not None and old.end_date < quote.effective:
        raise BillingError(f"the subscription already ends on {old.end_date}")
    old.end_date = quote.effective - timedelta(days=1)
    new = Subscription(
        member_id=old.member_id, plan_id=new_plan.id, location_id=old.location_id,  # type: ignore[arg-type]
        resource_id=None, quantity=quote.quantity, unit_price_cents=new_plan.price_cents,
        start_date=quote.effective, billing_anchor_day=old.billing_anchor_day,
        replaces_id=old.id,
    )
    session.add(new)
    session.flush()
    audit.record(session, actor=actor.label, action="subscription.change",
                 entity_type="subscription", entity_id=new.id,
                 details={"member": m.code, "from": quote.from_plan, "to": quote.to_plan,
                          "effective": quote.effective.isoformat(),
                          "net_cents": quote.proration.net_cents})
    return quote, new

