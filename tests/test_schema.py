"""Alembic builds the same schema as the models, on SQLite and PostgreSQL, and upgrades idempotently."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from finance import db


def test_alembic_head_matches_the_models(empty_engine):
    """After `upgrade head` there is no difference between the database and the models."""
    assert db.upgrade_schema(empty_engine) == db.head_revision(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert db.schema_is_current(empty_engine)
    # running it again is a no-op
    assert db.upgrade_schema(empty_engine) == db.head_revision(empty_engine)


def test_migrations_install_the_append_only_triggers(empty_engine):
    """The migrated schema refuses edits to the audit log just like the test schema."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    import pytest

    db.upgrade_schema(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, action, entity_type, details) "
                          "VALUES (CURRENT_TIMESTAMP, 'U1', 'x', 'y', '{}')"))
    with pytest.raises(DBAPIError, match="append-only"):
        with empty_engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))


def test_downgrade_to_base_removes_everything(empty_engine):
    """The initial migration can be rolled back to an empty database."""
    from alembic import command

    db.upgrade_schema(empty_engine)
    command.downgrade(db.alembic_config(empty_engine), "base")
    assert db.table_names(empty_engine) <= {"alembic_version"}
