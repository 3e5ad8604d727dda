"""The deskbooks command line, end to end on a SQLite file: init, demo, status, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.test_beancount_export import bean_check

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_init_creates_the_schema_and_is_repeatable(data_dir):
    """`init` migrates an empty data dir to head, and a second run changes nothing."""
    first = runner.invoke(app, ["init", "--json"])
    assert first.exit_code == 0, first.output
    payload = json.loads(first.output)
    head = sorted(p.name[:4] for p in (ROOT / "finance" / "migrations" / "versions").glob("0*.py"))[-1]
    assert payload["revision"] == head
    assert (data_dir / "deskbooks.db").exists()
    again = runner.invoke(app, ["init", "--json"])
    assert json.loads(again.output)["revision"] == head


def test_bad_configuration_is_one_clear_line_and_exit_2(data_dir, monkeypatch):
    """A bad setting stops the CLI with the variable named and no traceback."""
    monkeypatch.setenv("DESKBOOKS_DATABASE_URL", "mysql://nope")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "DESKBOOKS_DATABASE_URL" in result.output
    assert "Traceback" not in result.output


def test_unreachable_database_is_reported_without_secrets(data_dir, monkeypatch):
    """A PostgreSQL URL that cannot be reached gives a clear error that hides the password."""
    monkeypatch.setenv("DESKBOOKS_DATABASE_URL",
                       "postgresql://books:hunter2@127.0.0.1:1/books")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    assert "cannot reach the database" in result.output
    assert "hunter2" not in result.output


def test_demo_status_export_and_trial_balance(data_dir, tmp_path):
    """A small demo seeds, summarizes with a zero trial balance, and exports a clean ledger."""
    seeded = runner.invoke(app, ["demo", "--members", "60", "--months", "6",
                                 "--through", "2026-10", "--today", "2026-11-15",
                                 "--no-chat", "--json"])
    assert seeded.exit_code == 0, seeded.output
    summary = json.loads(seeded.stdout)
    assert summary["members"] >= 60
    assert summary["trial_balance_zero"] is True
    assert summary["mrr_cents"] > 0
    assert {p["kind"] for p in summary["planted_problems"]} >= {"capex_as_opex", "duplicate_customer"}

    again = runner.invoke(app, ["demo", "--no-chat", "--json", "--today", "2026-11-15"])
    assert again.exit_code == 0
    assert "already holds a space" in again.stderr
    assert json.loads(again.stdout)["members"] == summary["members"]

    status = runner.invoke(app, ["status", "--json", "--today", "2026-11-15"])
    assert json.loads(status.output)["mrr_cents"] == summary["mrr_cents"]

    tb = json.loads(runner.invoke(app, ["ledger", "trial-balance", "--json"]).output)
    assert tb["balanced"] and tb["total_debits_cents"] == tb["total_credits_cents"] > 0

    out = tmp_path / "demo.beancount"
    exported = runner.invoke(app, ["export", "beancount", "--out", str(out), "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["transactions"] > 100
    check = bean_check(out)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
