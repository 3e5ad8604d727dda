"""Fast bulk inserts that still tell us the new ids, on SQLite and PostgreSQL.

``INSERT ... RETURNING`` with ordered results degrades to one row per statement on SQLite, so
large batches reserve their ids first and insert with plain ``executemany``:

- PostgreSQL: ``nextval`` of the table's sequence, once per row, in one statement (ids are
  unique even with concurrent writers);
- SQLite: the transaction first takes the database's write lock (no other writer can add rows
  until it commits), then numbers rows after the current maximum.

Rows go to the driver's own ``executemany`` as plain tuples (``insert_tuples``): each value
still passes through its column type's bind processor and missing columns get their Python
defaults, so what is stored is exactly what a Core ``insert()`` would store, without the
per-row parameter machinery of the ORM and Core (the dominant cost at 100,000 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    Table,
    bindparam,
    func,
    or_,
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


def _python_defaults(table: Table, given: Sequence[str]) -> dict[str, Any]:
    """Values for the columns not given that have a Python-side default (one per call)."""
    out: dict[str, Any] = {}
    for col in table.c:
        default = col.default
        if col.name in given or default is None or col.primary_key:
            continue
        if getattr(default, "is_scalar", False):
            out[col.name] = default.arg  # type: ignore[attr-defined]
        elif getattr(default, "is_callable", False):
            out[col.name] = default.arg(None)  # type: ignore[attr-defined]
    return out


def insert_tuples(conn: Connection, table: Table, columns: Sequence[str],
                  rows: Iterable[Sequence[Any]], *, chunk: int = 10_000) -> int:
    """INSERT ``rows`` (tuples in ``columns`` order) with the driver's ``executemany``.

    Values pass through the column types' bind processors (dates, aware timestamps, decimals
    are stored as Core would store them); columns not named get their Python defaults.
    Returns the number of rows inserted.
    """
    dialect = conn.dialect
    defaults = _python_defaults(table, columns)
    names = [*columns, *defaults]
    extra = tuple(defaults.values())
    processors: list[tuple[int, Callable[[Any], Any]]] = []
    for i, name in enumerate(names):
        bind = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if bind is not None:
            processors.append((i, bind))
    if dialect.paramstyle == "qmark":
        mark = "?"
    elif dialect.paramstyle in ("format", "pyformat"):
        mark = "%s"
    else:  # pragma: no cover - only SQLite and psycopg are supported
        raise NotImplementedError(f"paramstyle {dialect.paramstyle!r}")
    quote = dialect.identifier_preparer
    sql = (f"INSERT INTO {quote.format_table(table)} "
           f"({', '.join(quote.quote(n) for n in names)}) "
           f"VALUES ({', '.join([mark] * len(names))})")
    # bulk rows repeat the same dates, prices and timestamps: convert each distinct value once
    memo: dict[tuple[int, type, Any], Any] = {}

    def convert(i: int, proc: Callable[[Any], Any], value: Any) -> Any:
        key = (i, type(value), value)
        try:
            return memo[key]
        except KeyError:
            memo[key] = converted = proc(value)
            return converted
        except TypeError:  # unhashable (a JSON document): no memo
            return proc(value)

    count = 0
    for part in chunks(rows if isinstance(rows, Sequence) else list(rows), chunk):
        if processors or extra:
            out = []
            for row in part:
                values = [*row, *extra]
                for i, process in processors:
                    if values[i] is not None:
                        values[i] = convert(i, process, values[i])
                out.append(tuple(values))
            part = out
        # the driver refuses a row with the wrong number of values
        conn.exec_driver_sql(sql, part if isinstance(part, list) else list(part))  # type: ignore[arg-type]
        count += len(part)
    return count


def insert_rows(session: Session, model: Any, rows: Sequence[dict[str, Any]],
                *, chunk: int = 10_000) -> list[int]:
    """Insert ``rows`` (dicts with the same keys) into ``model``'s table; their ids in order."""
    table: Table = model.__table__
    ids = reserve_ids(session, table, len(rows))
    if not rows:
        return ids
    keys = list(rows[0])
    get = itemgetter(*keys)
    if len(keys) == 1:
        tuples = [(row_id, get(row)) for row, row_id in zip(rows, ids, strict=True)]
    else:
        tuples = [(row_id, *get(row)) for row, row_id in zip(rows, ids, strict=True)]
    insert_tuples(session.connection(), table, ["id", *keys], tuples, chunk=chunk)
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
    tmp.create(conn, checkfirst=True)  # SQLite may keep one from a rolled-back transaction
    try:
        conn.execute(tmp.delete())
        get = itemgetter("b_id", *columns)
        insert_tuples(conn, tmp, ["b_id", *columns], [get(row) for row in rows])
        conn.execute(update(table).where(table.c.id == tmp.c.b_id)
                     .values({c: tmp.c[c] for c in columns}))
    finally:
        tmp.drop(conn)


def id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, distinct ``ids`` as inclusive (first, last) runs of consecutive numbers."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def where_ids(column: Any, ids: Iterable[int], *, per_statement: int = 500) -> list[Any]:
    """Conditions that together match exactly ``ids`` on ``column``, one per statement.

    Bulk-created rows have consecutive ids, so a few ``BETWEEN`` ranges replace thousands of
    bound parameters (the cost of a large ``IN`` list is mostly compiling it).
    """
    ranges = id_ranges(ids)
    conditions = []
    for part in chunks(ranges, per_statement):
        conditions.append(or_(*(column == a if a == b else column.between(a, b)
                                for a, b in part)))
    return conditions
