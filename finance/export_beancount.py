"""Export the ledger as Beancount text that ``bean-check`` accepts.

Accounts become ``Assets:1100-Accounts-Receivable`` and so on (the code keeps them unique and
sorted); every posting carries its location (and member / vendor code when there is one) as
metadata, so ``bean-query`` can slice by location the way the app does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from itertools import groupby
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, select
from sqlmodel import Session

from finance.models import Account, JournalEntry, JournalLine, Location, Member, Vendor
from finance.money import cents_to_decimal

_ROOTS = {
    "asset": "Assets",
    "liability": "Liabilities",
    "equity": "Equity",
    "revenue": "Income",
    "expense": "Expenses",
}


def beancount_account(code: str, name: str, kind: str) -> str:
    """``Income:4000-Membership-Revenue-Hot-Desk`` from a chart row."""
    words = re.findall(r"[A-Za-z0-9]+", name.replace("'", "").replace("\u2019", ""))
    slug = "-".join(w[:1].upper() + w[1:] for w in words) or "Account"
    return f"{_ROOTS[kind]}:{code}-{slug}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def write_beancount(session: Session, out: TextIO, *, title: str = "deskbooks ledger") -> int:
    """Stream the whole ledger to ``out``; returns the number of transactions written."""
    accounts = {a.id: a for a in session.execute(select(Account)).scalars()}
    names = {
        a.id: beancount_account(a.code, a.name, a.type) for a in accounts.values()
    }
    locations = dict(session.execute(select(Location.id, Location.code)).all())
    members = dict(session.execute(select(Member.id, Member.code)).all())
    vendors = dict(session.execute(select(Vendor.id, Vendor.name)).all())
    currencies = sorted(
        session.execute(select(JournalLine.currency).distinct()).scalars()
    ) or ["USD"]
    first = session.execute(select(func.min(JournalEntry.entry_date))).scalar_one()
    open_on: date = first or date(2000, 1, 1)

    out.write(f"option \"title\" {_quote(title)}\n")
    for cur in currencies:
        out.write(f'option "operating_currency" "{cur}"\n')
    out.write("\n")
    for acct_id in sorted(accounts, key=lambda i: accounts[i].code):
        out.write(f"{open_on.isoformat()} open {names[acct_id]}\n")
    out.write("\n")

    count = 0
    for entry, lines in _entries(session):
        count += 1
        out.write(f"{entry.entry_date.isoformat()} * {_quote(entry.memo)}\n")
        out.write(f"  entry_id: {entry.id}\n")
        if entry.reverses_id is not None:
            out.write(f"  reverses: {entry.reverses_id}\n")
        if entry.source_type:
            out.write(f"  source: {_quote(entry.source_type)}\n")
        for line in lines:
            amount = cents_to_decimal(line.amount_cents)
            out.write(f"  {names[line.account_id]}  {amount} {line.currency}\n")
            out.write(f"    location: {_quote(locations.get(line.location_id, '?'))}\n")
            if line.member_id is not None and line.member_id in members:
                out.write(f"    member: {_quote(members[line.member_id])}\n")
            if line.vendor_id is not None and line.vendor_id in vendors:
                out.write(f"    vendor: {_quote(vendors[line.vendor_id])}\n")
        out.write("\n")
    return count


def _entries(session: Session) -> Iterator[tuple[Any, list[Any]]]:
    """Entries with their lines, in date order, as light rows (no ORM objects)."""
    stmt = (
        select(
            JournalEntry.id, JournalEntry.entry_date, JournalEntry.memo,
            JournalEntry.reverses_id, JournalEntry.source_type,
            JournalLine.account_id, JournalLine.amount_cents, JournalLine.currency,
            JournalLine.location_id, JournalLine.member_id, JournalLine.vendor_id,
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .order_by(JournalEntry.entry_date, JournalEntry.id, JournalLine.id)
        .execution_options(yield_per=5000)
    )
    for _, group in groupby(session.execute(stmt), key=lambda r: r.id):
        lines = list(group)
        yield lines[0], lines


def export_beancount(session: Session, path: Path) -> int:
    """Write the ledger to ``path`` atomically (a temp file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        count = write_beancount(session, fh)
    tmp.replace(path)
    return count
