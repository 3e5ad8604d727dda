"""Billing from the command line: run, issue, quote and the prorate calculator."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from typer.testing import CliRunner

from bot.cli import app
from finance.services import build_services
from finance.settings import load_settings
from tests.helpers import add_member, build_space

runner = CliRunner()


@pytest.fixture
def books(tmp_path, monkeypatch):
    """A migrated SQLite store with one member on a $600 plan since January."""
    monkeypatch.setenv("DESKBOOKS_DATA_DIR", str(tmp_path))
    assert runner.invoke(app, ["init"]).exit_code == 0
    svc = build_services(load_settings())
    with svc.session() as s:
        space = build_space(s, svc.settings.knowledge_path)
        add_member(s, "M-000001", "Bluebird Labs", plan_id=space["plans"]["ded"],
                   location_id=space["location"], start=date(2026, 1, 1), price_cents=60_000)
    svc.dispose()
    return tmp_path


def test_prorate_reproduces_the_design_example_with_csv(tmp_path):
    """$600 -> $900 on Mar 11 prints -406.45 / +609.68 / net 203.23 and writes the schedule."""
    out = tmp_path / "schedule.csv"
    result = runner.invoke(app, ["prorate", "--price", "600.00", "--new-price", "900.00",
                                 "--period-start", "2026-03-01", "--period-end", "2026-03-31",
                                 "--change", "2026-03-11", "--csv", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [row["amount"] for row in data["lines"]] == ["-406.45", "609.68"]
    assert data["net_cents"] == 20_323
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["amount"] for r in rows] == ["-406.45", "609.68"]
    assert rows[0]["days"] == "21" and rows[0]["period_days"] == "31"


def test_prorate_stripe_example_per_second():
    """Stripe's $10 -> $20 halfway upgrade: credit -5.00, charge +10.00."""
    result = runner.invoke(app, ["prorate", "--price", "10", "--new-price", "20",
                                 "--period-start", "2026-04-01T00:00:00Z",
                                 "--period-end", "2026-05-01T00:00:00Z",
                                 "--change", "2026-04-16T00:00:00Z", "--rule", "per_second",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert [r["amount"] for r in json.loads(result.stdout)["lines"]] == ["-5.00", "10.00"]


@pytest.mark.parametrize("args, message", [
    (["--price", "10.001"], "fractions of a cent"),
    (["--price", "-5"], "negative"),
    (["--price", "10", "--rule", "daily"], "--rule"),
    (["--price", "10", "--change", "2026-05-02"], "outside the billing period"),
])
def test_prorate_bad_input_is_one_clear_line(args, message):
    """Bad amounts, rules and dates exit 2 with the reason and no traceback."""
    base = {"--period-start": "2026-04-01", "--period-end": "2026-04-30",
            "--change": "2026-04-10"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    if "--price" not in base:
        flat += ["--price", "10"]
    result = runner.invoke(app, ["prorate", *flat])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_quote_run_and_issue_from_the_cli(books):
    """Quote a member's upgrade, run March, issue it, and a rerun creates nothing."""
    quote = runner.invoke(app, ["quote", "--member", "Bluebird", "--to-plan", "Private Office",
                                "--on", "2026-03-11", "--json"])
    assert quote.exit_code == 0, quote.output
    assert [r["amount"] for r in json.loads(quote.stdout)["lines"]] == ["-406.45", "609.68"]

    dry = runner.invoke(app, ["billing", "run", "--period", "2026-03", "--dry-run", "--json"])
    assert json.loads(dry.stdout)["invoices"] == 1
    run = runner.invoke(app, ["billing", "run", "--period", "2026-03", "--json"])
    assert json.loads(run.stdout)["total_cents"] == 60_000
    issued = runner.invoke(app, ["billing", "issue", "--period", "2026-03", "--on",
                                 "2026-03-01", "--json"])
    assert json.loads(issued.stdout)["first_number"] == "INV-2026-000001"
    again = runner.invoke(app, ["billing", "run", "--period", "2026-03", "--json"])
    assert json.loads(again.stdout)["already_run"] is True
    tb = json.loads(runner.invoke(app, ["ledger", "trial-balance", "--json"]).stdout)
    assert tb["balanced"] and tb["total_debits_cents"] == 60_000


def test_staff_cannot_run_billing_from_the_cli(books):
    """--as a staff member is refused with the roles that may run billing."""
    result = runner.invoke(app, ["billing", "run", "--period", "2026-03", "--as", "USTAFF"])
    assert result.exit_code == 2
    assert "needs one of these roles" in result.output
