"""Backups and restores: SQLite through its online backup API, PostgreSQL through pg_dump.

A SQLite backup is a consistent copy taken while the app keeps running (``sqlite3``'s backup
API copies page by page under a read transaction). A PostgreSQL backup is ``pg_dump`` in its
custom format, limited to the schema the app uses; restore is ``pg_restore --clean`` into the
same database. Passwords go to the tools through ``PGPASSWORD``, never on a command line and
never into a log or an error message.

Every backup is written to a temporary name and renamed when complete, so a half-written file
never looks like a backup. A restore first checks the file is a backup of the right kind.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    backend: str
    bytes: int


def default_backup_name(engine: Engine, now: datetime) -> str:
    suffix = "sqlite" if engine.dialect.name == "sqlite" else "pgdump"
    return f"deskbooks-{now:%Y%m%d-%H%M%S}.{suffix}"


def backup(engine: Engine, target: Path) -> BackupResult:
    """Write a complete, consistent backup of the database behind ``engine`` to ``target``."""
    target = target.expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        if engine.dialect.name == "sqlite":
            _sqlite_backup(engine, partial)
        elif engine.dialect.name == "postgresql":
            _pg_dump(engine, partial)
        else:  # pragma: no cover - only two backends are supported
            raise BackupError(f"backups are not supported for {engine.dialect.name}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, engine.dialect.name, target.stat().st_size)


def restore(engine: Engine, source: Path) -> BackupResult:
    """Replace the database behind ``engine`` with the backup in ``source``."""
    source = source.expanduser()
    try:
        head = source.open("rb").read(16)
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror}") from None
    if engine.dialect.name == "sqlite":
        if head != SQLITE_MAGIC:
            raise BackupError(f"{source} is not a SQLite backup")
        _sqlite_restore(engine, source)
    elif engine.dialect.name == "postgresql":
        if not head.startswith(PGDUMP_MAGIC):
            raise BackupError(f"{source} is not a pg_dump custom-format backup")
        _pg_restore(engine, source)
    else:  # pragma: no cover
        raise BackupError(f"restores are not supported for {engine.dialect.name}")
    return BackupResult(source, engine.dialect.name, source.stat().st_size)


# --------------------------------------------------------------------------- SQLite


def _sqlite_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _sqlite_backup(engine: Engine, partial: Path) -> None:
    _sqlite_path(engine)
    raw = engine.raw_connection()
    try:
        dest = sqlite3.connect(partial)
        try:
            raw.driver_connection.backup(dest)  # type: ignore[union-attr]
        finally:
            dest.close()
    finally:
        raw.close()


def _sqlite_restore(engine: Engine, source: Path) -> None:
    """Copy the backup into the live database through the backup API (WAL-safe)."""
    _sqlite_path(engine)
    check = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        ok = check.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source} is damaged: {exc}") from None
    finally:
        check.close()
    if not ok or ok[0] != "ok":
        raise BackupError(f"{source} fails SQLite's integrity check")
    engine.dispose()  # no pooled connection may hold the old pages
    raw = engine.raw_connection()
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            src.backup(raw.driver_connection)  # type: ignore[arg-type]
        finally:
            src.close()
    finally:
        raw.close()
    engine.dispose()


# --------------------------------------------------------------------------- PostgreSQL


def _pg_env_and_args(engine: Engine) -> tuple[dict[str, str], list[str], str]:
    url = make_url(engine.url.render_as_string(hide_password=False))
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    args = []
    if url.host:
        args += ["-h", url.host]
    if url.port:
        args += ["-p", str(url.port)]
    if url.username:
        args += ["-U", url.username]
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    return env, args + ["-d", url.database or "postgres"], schema


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
            return str(candidate)
        raise BackupError(f"{name} is not installed (it comes with the PostgreSQL client tools)")
    return path


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BackupError(f"{what} failed: {detail[0][:300]}")


def _pg_dump(engine: Engine, partial: Path) -> None:
    env, args, schema = _pg_env_and_args(engine)
    _run([_tool("pg_dump"), *args, "-n", schema, "-Fc", "--no-owner", "-f", str(partial)],
         env, "pg_dump")


def _pg_restore(engine: Engine, source: Path) -> None:
    env, args, _schema = _pg_env_and_args(engine)
    engine.dispose()
    _run([_tool("pg_restore"), *args, "--clean", "--if-exists", "--no-owner",
          "--single-transaction", str(source)], env, "pg_restore")
