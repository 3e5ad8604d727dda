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
