"""Exports for the accountant's tools: QuickBooks Online and Xero journal CSV, invoices CSV.

Both journal layouts follow the vendors' documented import templates:

- **QuickBooks Online** (Settings → Import data → Journal entries): columns ``Journal No``,
  ``Journal Date`` (MM/DD/YYYY), ``Account Name``, ``Debits``, ``Credits``, ``Description``,
  ``Name``, ``Location``. Rows sharing a journal number form one entry; each row has either a
  debit or a credit. QBO matches accounts by name (turn account numbers off before importing),
  and wants a customer or vendor in ``Name`` on A/R and A/P lines, so those lines carry the
  member's or vendor's name. Location tracking must be on for the ``Location`` column.
- **Xero** (Accounting → Manual journals → Import): columns ``*Narration``, ``*Date``
  (dd/mm/yyyy), ``Description``, ``*AccountCode``, ``*TaxRate``, ``*Amount`` (positive debit,
  negative credit), ``TrackingName1``, ``TrackingOption1``. Rows with the same narration and date
  form one journal, so every narration carries the entry number. Xero takes at most 300 lines
  per file: bigger exports are split into numbered files, never splitting a journal.

Amounts come straight from the ledger's integer cents; nothing is recomputed.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlmodel import Session

from finance.models import (
    Account,
    Invoice,
    JournalEntry,
    JournalLine,
    Location,
    Member,
    Vendor,
)
from finance.money import cents_to_decimal

QBO_COLUMNS = ("Journal No", "Journal Date", "Account Name", "Debits", "Credits",
               "Description", "Name", "Location")
XERO_COLUMNS = ("*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
                "TrackingName1", "TrackingOption1")
XERO_MAX_LINES = 300
INVOICE_COLUMNS = ("number", "member_code", "member_name", "location", "period", "status",
                   "issue_date", "due_date", "currency", "subtotal", "tax", "total",
                   "credit_applied", "paid", "balance_due")


class ExportError(ValueError):
    """The ledger cannot be exported as asked (mixed currencies, an oversized journal...)."""


@dataclass(frozen=True)
class ExportLine:
    account_code: str
    account_name: str
    amount_cents: int  # positive debit, negative credit
    currency: str
    location_name: str
    party: str | None  # member or vendor name, when the line names one
    memo: str | None


@dataclass(frozen=True)
class ExportEntry:
    entry_id: int
    entry_date: date
    memo: str
    lines: tuple[ExportLine, ...]


@dataclass(frozen=True)
class ExportReport:
    files: tuple[Path, ...]
    entries: int
    lines: int


def iter_entries(
    session: Session, *, start: date | None = None, end: date | None = None,
    batch: int = 2000,
) -> Iterator[ExportEntry]:
    """Posted entries in date order (then id), each with its legs, read in batches."""
    accounts = {a.id: (a.code, a.name) for a in session.execute(select(Account)).scalars()}
    locations = dict(session.execute(select(Location.id, Location.name)).all())
    members = dict(session.execute(select(Member.id, Member.name)).all())
    vendors = dict(session.execute(select(Vendor.id, Vendor.name)).all())
    query = select(JournalEntry.id, JournalEntry.entry_date, JournalEntry.memo)
    if start is not None:
        query = query.where(JournalEntry.entry_date >= start)
    if end is not None:
        query = query.where(JournalEntry.entry_date <= end)
    heads = session.execute(query.order_by(JournalEntry.entry_date, JournalEntry.id)).all()
    for i in range(0, len(heads), batch):
        chunk = heads[i:i + batch]
        ids = [h.id for h in chunk]
        legs: dict[int, list[ExportLine]] = {eid: [] for eid in ids}
        rows = session.execute(
            select(JournalLine).where(JournalLine.entry_id.in_(ids)).order_by(JournalLine.id)
        ).scalars()
        for line in rows:
            code, name = accounts[line.account_id]
            party = (members.get(line.member_id) if line.member_id is not None
                     else vendors.get(line.vendor_id) if line.vendor_id is not None else None)
            legs[line.entry_id].append(ExportLine(
                code, name, line.amount_cents, line.currency,
                locations.get(line.location_id, str(line.location_id)), party, line.memo))
        for head in chunk:
            yield ExportEntry(head.id, head.entry_date, head.memo, tuple(legs[head.id]))


def _money(cents: int) -> str:
    return f"{cents_to_decimal(cents):.2f}"


def _single_currency(entry: ExportEntry, wanted: set[str]) -> None:
    currencies = {line.currency for line in entry.lines}
    wanted.update(currencies)
    if len(wanted) > 1:
        raise ExportError(
            "the ledger holds more than one currency "
            f"({', '.join(sorted(wanted))}); journal imports take one home currency"
        )


def write_quickbooks(
    session: Session, out: TextIO, *, start: date | None = None, end: date | None = None,
) -> tuple[int, int]:
    """Write QuickBooks Online journal-entry import rows; returns (entries, lines)."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(QBO_COLUMNS)
    entries = lines = 0
    currencies: set[str] = set()
    for entry in iter_entries(session, start=start, end=end):
        _single_currency(entry, currencies)
        day = entry.entry_date.strftime("%m/%d/%Y")
        for leg in entry.lines:
            debit = _money(leg.amount_cents) if leg.amount_cents > 0 else ""
            credit = _money(-leg.amount_cents) if leg.amount_cents < 0 else ""
            writer.writerow((
                entry.entry_id, day, leg.account_name, debit, credit,
                _clean(leg.memo or entry.memo), _clean(leg.party or ""), leg.location_name,
            ))
            lines += 1
        entries += 1
    return entries, lines


def export_quickbooks(
    session: Session, path: Path, *, start: date | None = None, end: date | None = None,
) -> ExportReport:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        entries, lines = write_quickbooks(session, out, start=start, end=end)
    tmp.replace(path)
    return ExportReport((path,), entries, lines)


def export_xero(
    session: Session, path: Path, *, start: date | None = None, end: date | None = None,
    tax_rate: str = "Tax Exempt", tracking_name: str = "Location",
    max_lines: int = XERO_MAX_LINES,
) -> ExportReport:
    """Write Xero manual-journal import files (split at ``max_lines``, never mid-journal)."""
    chunks: list[list[tuple[str, ...]]] = [[]]
    entries = lines = 0
    currencies: set[str] = set()
    for entry in iter_entries(session, start=start, end=end):
        _single_currency(entry, currencies)
        if len(entry.lines) > max_lines:
            raise ExportError(
                f"journal entry {entry.entry_id} has {len(entry.lines)} lines; "
                f"Xero imports at most {max_lines} lines per file"
            )
        if len(chunks[-1]) + len(entry.lines) > max_lines:
            chunks.append([])
        narration = _clean(f"{entry.memo} [JE {entry.entry_id}]")
        day = entry.entry_date.strftime("%d/%m/%Y")
        for leg in entry.lines:
            chunks[-1].append((
                narration, day, _clean(leg.memo or leg.party or entry.memo), leg.account_code,
                tax_rate, _money(leg.amount_cents), tracking_name, leg.location_name,
            ))
            lines += 1
        entries += 1
    if len(chunks) == 1:
        targets = [path]
    else:
        targets = [path.with_name(f"{path.stem}-{n:03d}{path.suffix}")
                   for n in range(1, len(chunks) + 1)]
    for target, rows in zip(targets, chunks, strict=True):
        tmp = target.with_name(target.name + ".part")
        with tmp.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out, lineterminator="\r\n")
            writer.writerow(XERO_COLUMNS)
            writer.writerows(rows)
        tmp.replace(target)
    return ExportReport(tuple(targets), entries, lines)


def export_invoices(
    session: Session, path: Path, *, start: date | None = None, end: date | None = None,
) -> ExportReport:
    """Issued invoices (by issue date) with amounts in dollars and the balance still due."""
    members = {m.id: (m.code, m.name) for m in session.execute(select(Member)).scalars()}
    locations = dict(session.execute(select(Location.id, Location.name)).all())
    query = select(Invoice).where(Invoice.number.is_not(None))
    if start is not None:
        query = query.where(Invoice.issue_date >= start)
    if end is not None:
        query = query.where(Invoice.issue_date <= end)
    count = 0
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(INVOICE_COLUMNS)
        for inv in session.execute(query.order_by(Invoice.issue_date, Invoice.number)).scalars():
            code, name = members.get(inv.member_id, ("", ""))
            due = 0 if inv.status == "void" else (
                inv.total_cents - inv.credit_applied_cents - inv.amount_paid_cents)
            writer.writerow((
                inv.number, code, _clean(name), locations.get(inv.location_id, ""),
                inv.period or "", inv.status, inv.issue_date or "", inv.due_date or "",
                inv.currency, _money(inv.subtotal_cents), _money(inv.tax_cents),
                _money(inv.total_cents), _money(inv.credit_applied_cents),
                _money(inv.amount_paid_cents), _money(due),
            ))
            count += 1
    tmp.replace(path)
    return ExportReport((path,), count, count)


def _clean(text: str) -> str:
    """One line of plain text; a leading = + - @ would be run as a formula by spreadsheets."""
    flat = " ".join(text.split())
    if flat[:1] in ("=", "+", "-", "@"):
        flat = "'" + flat
    return flat
