"""Small builders shared by tests (plain functions, no fixtures)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from finance.models import Location


def add_location(session: Session, code: str = "DT", tz: str = "America/New_York") -> int:
    loc = Location(code=code, name={"DT": "Downtown"}.get(code, code), timezone=tz)
    session.add(loc)
    session.flush()
    assert loc.id is not None
    return loc.id


def count(session: Session, model: Any, **where: Any) -> int:
    """Rows of ``model`` matching equality filters."""
    stmt = select(func.count()).select_from(model).filter_by(**where)
    return int(session.execute(stmt).scalar_one())


def all_rows(session: Session, model: Any, *order_by: Any) -> list[Any]:
    return list(session.execute(select(model).order_by(*order_by)).scalars())


def build_space(session: Session, knowledge_dir: Any) -> dict[str, Any]:
    """One Downtown location with three monthly plans, a yearly plan and staff roles."""
    from finance.models import Plan, SlackUser
    from finance.tax import sync_tax_rates

    loc = add_location(session, "DT")
    plans = {
        "hot": Plan(code="HOT", name="Hot Desk", desk_type="hot_desk", price_cents=30_000),
        "ded": Plan(code="DED", name="Dedicated Desk", desk_type="dedicated_desk",
                    price_cents=60_000),
        "office": Plan(code="OFF", name="Private Office", desk_type="private_office",
                       price_cents=90_000, deposit_cents=90_000),
        "yearly": Plan(code="DED-Y", name="Dedicated Desk Annual", desk_type="dedicated_desk",
                       price_cents=600_000, interval="year"),
    }
    session.add_all(plans.values())
    session.add_all([
        SlackUser(team_id="T1", user_id="UMGR", name="Maya Manager", role="manager"),
        SlackUser(team_id="T1", user_id="USTAFF", name="Sam Staff", role="staff"),
    ])
    session.flush()
    sync_tax_rates(session, knowledge_dir)
    return {"location": loc, "plans": {k: p.id for k, p in plans.items()}}


def add_member(session: Session, code: str, name: str, *, plan_id: int, location_id: int,
               start: Any, price_cents: int, end: Any = None, quantity: int = 1,
               anchor: int = 1) -> tuple[int, int]:
    from finance.models import Member, Subscription

    member = Member(code=code, kind="company", name=name)
    session.add(member)
    session.flush()
    sub = Subscription(member_id=member.id, plan_id=plan_id, location_id=location_id,
                       quantity=quantity, unit_price_cents=price_cents, start_date=start,
                       end_date=end, billing_anchor_day=anchor)
    session.add(sub)
    session.flush()
    return member.id, sub.id  # type: ignore[return-value]
