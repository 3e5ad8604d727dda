"""Engines, sessions and schema management (Alembic) for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel

from finance import models

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class StoreError(Exception):
    """The database cannot be reached or is not in a usable state."""


def make_engine(
    url: str, *, echo: bool = False, connect_args: dict[str, Any] | None = None
) -> Engine:
    """An engine with the settings each backend needs (FKs and WAL on SQLite)."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        path = url.split("sqlite:///", 1)[-1] if url.startswith("sqlite:///") else ""
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs["pool_pre_ping"] = True
        if connect_args:
            kwargs["connect_args"] = connect_args
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    try:
        cur.execute("PRAGMA journal_mode=WAL")
    except Exception:  # in-memory databases have no WAL; nothing to do
        pass
    cur.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# --------------------------------------------------------------------------- append-only


_SQLITE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {op} ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END
"""

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION deskbooks_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION USING
    MESSAGE = TG_TABLE_NAME || ' is append-only: ' || lower(TG_OP) || ' refused',
    ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql
"""

_PG_TRIGGERS = (
    "DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
    "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION deskbooks_append_only()",
    "DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
    "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION deskbooks_append_only()",
)


def install_append_only_triggers(conn: Connection) -> None:
    """Make the audit log and posted journal entries immutable in the database itself."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        for table in models.APPEND_ONLY_TABLES:
            for verb, op in (("update", "UPDATE"), ("delete", "DELETE")):
                conn.exec_driver_sql(_SQLITE_TRIGGER.format(table=table, verb=verb, op=op))
    elif dialect == "postgresql":
        conn.exec_driver_sql(_PG_FUNCTION)
        for table in models.APPEND_ONLY_TABLES:
            for stmt in _PG_TRIGGERS:
                conn.exec_driver_sql(stmt.format(table=table))
    else:  # pragma: no cover - guarded by settings validation
        raise StoreError(f"unsupported database: {dialect}")


def drop_append_only_triggers(conn: Connection) -> None:
    dialect = conn.dialect.name
    for table in models.APPEND_ONLY_TABLES:
        if dialect == "sqlite":
            for verb in ("update", "delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    if dialect == "postgresql":
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS deskbooks_append_only()")


# --------------------------------------------------------------------------- schema


def create_schema_fast(engine: Engine) -> None:
    """Create every table and trigger straight from the models (tests and benchmarks).

    Production databases go through :func:`upgrade_schema`; a test checks both give the
    same schema.
    """
    SQLModel.metadata.create_all(engine)
    with engine.begin() as conn:
        install_append_only_triggers(conn)


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade_schema(engine: Engine, revision: str = "head") -> str:
    """Create or upgrade the schema with Alembic; returns the revision now applied."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
    return current_revision(engine) or "base"


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def schema_is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(engine)


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def ping(engine: Engine) -> None:
    """Raise ``StoreError`` with a clear message when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # driver errors differ per backend
        raise StoreError(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{type(exc).__name__}"
        ) from exc


@contextmanager
def scratch_postgres_schema(url: str, prefix: str = "scratch") -> Iterator[Engine]:
    """An engine on a new, empty PostgreSQL schema that is dropped afterwards.

    Tests and benchmarks use it to get an isolated database on a shared server.
    """
    import uuid

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            yield engine
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        admin.dispose()
