"""Alembic environment: runs against the engine deskbooks hands over (or the settings' URL)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from finance import models  # noqa: F401  (registers every table on the metadata)

config = context.config
target_metadata = SQLModel.metadata


def _engine():  # type: ignore[no-untyped-def]
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine
    from finance.db import make_engine
    from finance.settings import load_settings

    return make_engine(load_settings().effective_database_url)


FOREIGN_TABLES = {"apscheduler_jobs"}  # owned by APScheduler's job store, not by deskbooks


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    return not (type_ == "table" and name in FOREIGN_TABLES)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():  # pragma: no cover
    raise SystemExit("deskbooks migrations run online only: use `deskbooks init`")
run_migrations_online()
