"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, a fixed clock.

PostgreSQL comes from DESKBOOKS_TEST_POSTGRES_URL (default: the local server's ``test``
database). Each test gets its own schema, dropped afterwards. When the server cannot be
reached the PostgreSQL variants are skipped with a message, except under CI (CI=1), where
that is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, create_engine, text

from finance import db
from finance.services import Services, build_services
from finance.settings import load_settings

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FIXED_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

_pg_state: dict[str, object] = {}


def postgres_url() -> str:
    return os.environ.get("DESKBOOKS_TEST_POSTGRES_URL", DEFAULT_PG_URL)


def _postgres_available() -> str | None:
    """None when reachable, else the reason (cached for the session)."""
    if "reason" not in _pg_state:
        reason = None
        try:
            probe = create_engine(postgres_url())
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
        except Exception as exc:  # any driver error means "not reachable"
            reason = f"PostgreSQL not reachable at {postgres_url()} ({type(exc).__name__})"
        _pg_state["reason"] = reason
    return _pg_state["reason"]  # type: ignore[return-value]


def require_postgres() -> None:
    reason = _postgres_available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL suite")
    pytest.skip(f"{reason}; set DESKBOOKS_TEST_POSTGRES_URL to run the PostgreSQL variants")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine on an empty database (no tables) for schema tests."""
    if backend == "sqlite":
        engine = db.make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}")
        yield engine
        engine.dispose()
        return
    require_postgres()
    with db.scratch_postgres_schema(postgres_url(), "t") as engine:
        yield engine


@pytest.fixture
def services(empty_engine: Engine, tmp_path: object) -> Iterator[Services]:
    """Core services on a fresh schema with the chart of accounts loaded, clock fixed."""
    settings = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path))
    svc = build_services(settings, clock=lambda: FIXED_NOW, engine=empty_engine)
    svc.init_schema(fast=True)
    yield svc


@pytest.fixture
def sqlite_services(tmp_path: object) -> Iterator[Services]:
    """Core services on a SQLite file only (for tests that do not touch storage rules)."""
    settings = load_settings(DESKBOOKS_DATA_DIR=str(tmp_path))
    svc = build_services(settings, clock=lambda: FIXED_NOW)
    svc.init_schema(fast=True)
    yield svc
    svc.dispose()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read the developer's configuration, .env file or data dir."""
    for name in list(os.environ):
        if name.startswith(("DESKBOOKS_", "SLACK_", "OPENAI_")) and name != "DESKBOOKS_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
