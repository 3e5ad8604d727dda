"""Backups and restores on SQLite (online backup API) and PostgreSQL (pg_dump / pg_restore)."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from finance import ledger
from finance.backup import BackupError, backup, restore
from finance.ledger import EntryDraft, Leg
from finance.models import JournalEntry, Member
from tests.helpers import add_location, count


def _entry(s, loc: int, memo: str) -> None:
    ledger.post_entry(s, EntryDraft(date(2026, 3, 1), memo, [
        Leg("1000", 5_000, loc), Leg("3000", -5_000, loc)]), actor="U1")


def test_backup_then_restore_brings_the_books_back(services, tmp_path):
    """Work done after a backup is gone after restoring it; the ledger is as it was."""
    with services.session() as s:
        loc = add_location(s, "DT")
        s.add(Member(code="M-1", kind="person", name="Priya Shah"))
        _entry(s, loc, "opening cash")
    result = backup(services.engine, tmp_path / "books.bak")
    assert result.bytes > 0 and not list(tmp_path.glob("*.part"))
    with services.session() as s:
        _entry(s, loc, "after the backup")
        s.add(Member(code="M-2", kind="person", name="Late Joiner"))
    restore(services.engine, tmp_path / "books.bak")
    with services.session() as s:
        assert count(s, JournalEntry) == 1
        assert count(s, Member) == 1
        assert ledger.trial_balance(s).is_balanced
        _entry(s, loc, "books still writable and append-only after restore")
    with services.engine.begin() as conn, pytest.raises(Exception):
        conn.exec_driver_sql("DELETE FROM journal_entry")


def test_restore_refuses_a_file_that_is_not_a_backup(services, tmp_path):
    """A random file or a missing file is refused with a clear message; nothing changes."""
    with services.session() as s:
        loc = add_location(s, "DT")
        _entry(s, loc, "keep me")
    junk = tmp_path / "junk.bak"
    junk.write_bytes(b"definitely not a database" * 10)
    with pytest.raises(BackupError, match="is not a"):
        restore(services.engine, junk)
    with pytest.raises(BackupError, match="cannot read"):
        restore(services.engine, tmp_path / "missing.bak")
    with services.session() as s:
        assert count(s, JournalEntry) == 1


def test_sqlite_restore_refuses_a_damaged_backup(sqlite_services, tmp_path):
    """A truncated SQLite backup fails the integrity check instead of replacing the books."""
    with sqlite_services.session() as s:
        loc = add_location(s, "DT")
        for i in range(200):
            _entry(s, loc, f"entry {i} " + "x" * 200)
    backup(sqlite_services.engine, tmp_path / "ok.bak")
    data = (tmp_path / "ok.bak").read_bytes()
    (tmp_path / "bad.bak").write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupError):
        restore(sqlite_services.engine, tmp_path / "bad.bak")
    with sqlite_services.session() as s:
        assert count(s, JournalEntry) == 200


def test_cli_backup_and_restore(tmp_path, monkeypatch):
    """`deskbooks backup` writes under the data dir; `restore` wants --yes, then restores."""
    from bot.cli import app

    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(app, ["backup", "--json", "--today", "2026-11-29"])
    assert result.exit_code == 0, result.output
    files = list((tmp_path / "data" / "backups").glob("deskbooks-*.sqlite"))
    assert len(files) == 1
    result = runner.invoke(app, ["restore", str(files[0])])
    assert result.exit_code == 2 and "--yes" in result.output
    result = runner.invoke(app, ["restore", str(files[0]), "--yes"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["backup", "--as", "UNKNOWN"])
    assert result.exit_code == 2 and "not a known deskbooks user" in result.output
