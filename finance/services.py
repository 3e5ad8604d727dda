"""The composition root of the core: one place that builds the services from settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlmodel import Session

from finance import db, ledger
from finance.settings import Settings
from finance.types import utcnow

Clock = Callable[[], datetime]


@dataclass
class Services:
    """Everything entrypoints need, built once and passed in (never module globals)."""

    settings: Settings
    engine: Engine
    clock: Clock
    chart: ledger.Chart

    @contextmanager
    def session(self) -> Iterator[Session]:
        with db.session_scope(self.engine) as session:
            yield session

    def today(self, tz: str = "UTC") -> date:
        """Today's date in a time zone (a location's zone decides what "today" means)."""
        return self.clock().astimezone(ZoneInfo(tz)).date()

    def init_schema(self, *, fast: bool = False) -> str:
        """Create or upgrade the schema, then load the chart of accounts."""
        revision = "create_all"
        if fast:
            db.create_schema_fast(self.engine)
        else:
            revision = db.upgrade_schema(self.engine)
        with self.session() as session:
            ledger.sync_chart(session, self.chart)
        return revision

    def dispose(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings, *, clock: Clock = utcnow, engine: Engine | None = None) -> Services:
    """Build the core services; nothing touches the database until asked."""
    chart = ledger.load_chart(settings.knowledge_path)
    return Services(
        settings=settings,
        engine=engine or db.make_engine(settings.effective_database_url),
        clock=clock,
        chart=chart,
    )
