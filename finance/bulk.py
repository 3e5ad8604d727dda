"""Fast bulk inserts that still tell us the new ids, on SQLite and PostgreSQL.

``INSERT ... RETURNING`` with ordered results degrades to one row per statement on SQLite, so
large batches reserve their ids first and insert with plain ``executemany``:

- PostgreSQL: ``nextval`` of the table's sequence, once per row, in one statement (ids are
  unique even with concurrent writers);
- SQLite: the transaction first takes the database's write lock (no other writer can add rows
  until it commits), then numbers rows after the current maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlmodel import Session

from finance.util import chunks


def reserve_ids(session: Session, table: Table, count: int) -> list[int]:
    if count <= 0:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        rows = session.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": count},
        ).scalars().all()
        return [int(r) for r in rows]
    # SQLite: a write statement (even one that changes nothing) takes the write lock
    session.execute(text("UPDATE number_sequence SET last_value = last_value WHERE 0"))
    start = int(session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1
    return list(range(start, start + count))


def insert_rows(session: Session, model: Any, rows: Sequence[dict[str, Any]],
                *, chunk: int = 5000) -> list[int]:
    """Insert ``rows`` into ``model``'s table and return their ids in order."""
    table: Table = model.__table__
    ids = reserve_ids(session, table, len(rows))
    payload = [dict(row, id=row_id) for row, row_id in zip(rows, ids, strict=True)]
    for part in chunks(payload, chunk):
        session.execute(insert(table), list(part))
    return ids


def update_rows(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE many rows by id; each row has ``b_id`` plus the new values.

    Small batches use one ``executemany``; large ones load a temporary table and run a single
    ``UPDATE ... FROM`` (several times faster on both databases).
    """
    if not rows:
        return
    table: Table = model.__table__
    columns = [k for k in rows[0] if k != "b_id"]
    conn = session.connection()
    if len(rows) < 2000:
        stmt = (update(table).where(table.c.id == bindparam("b_id"))
                .values({c: bindparam(c) for c in columns}))
        conn.execute(stmt, list(rows))
        return
    tmp = Table(f"tmp_update_{table.name}", MetaData(),
                Column("b_id", BigInteger, primary_key=True),
                *(Column(c, table.c[c].type) for c in columns), prefixes=["TEMPORARY"])
    tmp.create(conn)
    try:
        for part in chunks(rows, 10_000):
            conn.execute(insert(tmp), list(part))
        conn.execute(update(table).where(table.c.id == tmp.c.b_id)
                     .values({c: tmp.c[c] for c in columns}))
    finally:
        tmp.drop(conn)
