"""The Beancount export is accepted by bean-check and agrees with the ledger's balances."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from beancount import loader
from beancount.core import realization

from finance import ledger
from finance.export_beancount import beancount_account, export_beancount
from finance.ledger import EntryDraft, Leg
from tests.helpers import add_location


def bean_check(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("bean-check") or str(Path(sys.executable).parent / "bean-check")
    return subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)


def test_account_names_are_valid_beancount_components():
    """Chart names with dashes, ampersands and apostrophes become valid account names."""
    assert beancount_account("4000", "Membership Revenue — Hot Desk", "revenue") == (
        "Income:4000-Membership-Revenue-Hot-Desk"
    )
    assert beancount_account("3000", "Owner's Equity", "equity") == "Equity:3000-Owners-Equity"
    assert beancount_account("1500", "Furniture & Fixtures", "asset") == (
        "Assets:1500-Furniture-Fixtures"
    )


def test_export_passes_bean_check_and_matches_balances(services, tmp_path):
    """A ledger with sales, tax, a payment, a reversal and tricky memos checks clean."""
    with services.session() as s:
        dt = add_location(s, "DT")
        rs = add_location(s, "RS", "America/Chicago")
        ledger.post_entry(s, EntryDraft(date(2026, 3, 1), 'Invoice "INV-1" \\ March', [
            Leg("1100", 10_888, dt), Leg("4000", -10_000, dt), Leg("2100", -888, dt)]), actor="U1")
        pay = ledger.post_entry(s, EntryDraft(date(2026, 3, 4), "Card payment", [
            Leg("1050", 10_888, dt), Leg("1100", -10_888, dt)]), actor="U1")
        ledger.post_entry(s, EntryDraft(date(2026, 3, 6), "Rent\nRiverside", [
            Leg("5000", 450_000, rs), Leg("2000", -450_000, rs)]), actor="U1")
        ledger.reverse_entry(s, pay.id, on_date=date(2026, 3, 7), actor="U1", reason="chargeback")
        out = tmp_path / "books.beancount"
        assert export_beancount(s, out) == 4
        tb = {r.code: r.balance_cents for r in ledger.trial_balance(s).rows}

    result = bean_check(out)
    assert result.returncode == 0, result.stdout + result.stderr
    entries, errors, _ = loader.load_file(str(out))
    assert errors == []
    real = realization.realize(entries)
    for code, cents in tb.items():
        name = next(a for a in realization.iter_children(real)
                    if a.account.split(":")[-1].startswith(code + "-"))
        units = name.balance.get_currency_units("USD").number
        assert int(units * 100) == cents


def test_empty_ledger_exports_a_valid_file(services, tmp_path):
    """With no postings yet the export still checks clean (accounts only)."""
    out = tmp_path / "empty.beancount"
    with services.session() as s:
        assert export_beancount(s, out) == 0
    assert bean_check(out).returncode == 0
