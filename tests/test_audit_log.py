"""The audit log is append-only in the database itself, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from finance import audit
from finance.models import AuditLog


def test_audit_rows_insert_but_never_change(services):
    """INSERT works; UPDATE and DELETE fail with an append-only error; the row survives."""
    with services.session() as s:
        row = audit.record(s, actor="U1", action="bill.approve", entity_type="bill",
                           entity_id=7, details={"amount_cents": 120_000})
        s.flush()
        for sql in (f"UPDATE audit_log SET actor = 'mallory' WHERE id = {row.id}",
                    f"DELETE FROM audit_log WHERE id = {row.id}",
                    "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError) as info:
                with s.begin_nested():
                    s.execute(text(sql))
            assert "append-only" in str(info.value)
    with services.session() as s:
        kept = s.get(AuditLog, row.id)
        assert kept is not None and kept.actor == "U1"
        assert kept.details == {"amount_cents": 120_000}
        assert kept.at.tzinfo is not None


@pytest.mark.postgres
def test_audit_log_cannot_be_truncated_on_postgres(services):
    """TRUNCATE, which skips row triggers, is refused by a statement trigger."""
    if services.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    with services.session() as s:
        audit.record(s, actor="U1", action="x", entity_type="y")
    with pytest.raises(DBAPIError, match="append-only"):
        with services.engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
