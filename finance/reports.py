"""Compliance reports: the 1099-NEC contractor report and the sales tax report.

**1099-NEC.** Everything paid to a vendor marked as a contractor in a calendar year: bills by
their payment date and expenses (receipts) by their date, except card payments, which the card
processor reports on 1099-K. A contractor at or above the year's threshold
(``knowledge/form_1099.yaml``: $600 through 2025, $2,000 from 2026) is reportable; a reportable
contractor without a TIN is listed as missing one (collect a W-9 before filing).

**Sales tax.** Per location and line kind: taxable sales, untaxed sales and tax charged on the
invoices issued in the range (by issue date), less the tax refunded on credit notes issued in
the range and the tax of invoices voided in the range (by the date of the void's reversal). The net is what the period adds to 2100 Sales Tax
Payable, and the report carries the ledger's own movement on 2100 for the same range and
location (remittances to the tax authority, entries with source ``tax_remittance``, are shown
apart) so a difference shows at once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import aliased
from sqlmodel import Session

from finance.models import (
    Account,
    Bill,
    BillStatus,
    CreditNote,
    Expense,
    ExpenseStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    JournalEntry,
    JournalLine,
    Location,
    Vendor,
)
from finance.money import MoneyError, parse_amount

SALES_TAX_PAYABLE = "2100"
REMITTANCE = "tax_remittance"  # journal source type of payments to the tax authority


class ReportError(ValueError):
    """A report cannot be produced as asked (bad range, missing configuration)."""


# --------------------------------------------------------------------------- 1099-NEC


@dataclass(frozen=True)
class Policy1099:
    thresholds: tuple[tuple[int, int], ...]  # (from_year, cents), ascending
    excluded_methods: frozenset[str]

    def threshold_cents(self, year: int) -> int:
        chosen = None
        for from_year, cents in self.thresholds:
            if from_year <= year:
                chosen = cents
        if chosen is None:
            raise ReportError(f"no 1099 threshold configured for {year}")
        return chosen


def load_1099_policy(knowledge_dir: Path) -> Policy1099:
    path = knowledge_dir / "form_1099.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows = sorted(
            (int(row["from_year"]), parse_amount(str(row["amount"])))
            for row in raw["thresholds"]
        )
    except FileNotFoundError:
        raise ReportError(f"{path} is missing") from None
    except (KeyError, TypeError, ValueError, MoneyError, yaml.YAMLError) as exc:
        raise ReportError(f"{path} is not a valid 1099 policy: {exc}") from None
    if not rows:
        raise ReportError(f"{path} lists no thresholds")
    methods = frozenset(str(m) for m in raw.get("excluded_payment_methods", ["card"]))
    return Policy1099(tuple(rows), methods)


@dataclass(frozen=True)
class Contractor1099:
    vendor_id: int
    name: str
    tin: str | None
    address: str | None
    paid_cents: int  # reportable payments (card excluded)
    card_cents: int  # excluded, reported on 1099-K
    payments: int
    reportable: bool
    missing_tin: bool


@dataclass(frozen=True)
class Report1099:
    year: int
    threshold_cents: int
    contractors: tuple[Contractor1099, ...]

    @property
    def reportable(self) -> tuple[Contractor1099, ...]:
        return tuple(c for c in self.contractors if c.reportable)

    @property
    def missing_tin(self) -> tuple[Contractor1099, ...]:
        return tuple(c for c in self.contractors if c.missing_tin)


def report_1099(session: Session, year: int, policy: Policy1099) -> Report1099:
    """Contractor payments in ``year``, who is reportable and who lacks a TIN."""
    if not 1990 <= year <= 2100:
        raise ReportError(f"year must be between 1990 and 2100, got {year}")
    start, end = date(year, 1, 1), date(year, 12, 31)
    threshold = policy.threshold_cents(year)
    contractors = {
        v.id: v for v in session.execute(
            select(Vendor).where(Vendor.is_contractor.is_(True))).scalars()
    }
    paid: dict[int, int] = defaultdict(int)
    card: dict[int, int] = defaultdict(int)
    count: dict[int, int] = defaultdict(int)
    if contractors:
        bills = session.execute(
            select(Bill.vendor_id, Bill.payment_method, func.sum(Bill.amount_cents),
                   func.count(Bill.id))
            .where(Bill.vendor_id.in_(contractors), Bill.status == BillStatus.PAID,
                   Bill.paid_on >= start, Bill.paid_on <= end)
            .group_by(Bill.vendor_id, Bill.payment_method)
        ).all()
        expenses = session.execute(
            select(Expense.vendor_id, Expense.payment_method, func.sum(Expense.amount_cents),
                   func.count(Expense.id))
            .where(Expense.vendor_id.in_(contractors),
                   Expense.status == ExpenseStatus.POSTED,
                   Expense.payment_method != "ap",  # paid later through a bill
                   Expense.expense_date >= start, Expense.expense_date <= end)
            .group_by(Expense.vendor_id, Expense.payment_method)
        ).all()
        for vendor_id, method, total, n in [*bills, *expenses]:
            if (method or "") in policy.excluded_methods:
                card[vendor_id] += int(total or 0)
            else:
                paid[vendor_id] += int(total or 0)
                count[vendor_id] += int(n)
    rows = []
    for vid, vendor in contractors.items():
        if not paid[vid] and not card[vid]:
            continue
        reportable = paid[vid] >= threshold
        rows.append(Contractor1099(
            vid, vendor.name, vendor.tin, vendor.address, paid[vid], card[vid], count[vid],
            reportable, reportable and not (vendor.tin or "").strip(),
        ))
    rows.sort(key=lambda c: (-c.paid_cents, c.name))
    return Report1099(year, threshold, tuple(rows))


# --------------------------------------------------------------------------- sales tax


@dataclass(frozen=True)
class SalesTaxRow:
    location: str
    line_kind: str
    taxable_cents: int
    untaxed_cents: int
    tax_cents: int


@dataclass(frozen=True)
class SalesTaxLocation:
    location: str
    currency: str
    tax_charged_cents: int
    tax_refunded_cents: int  # on credit notes issued in the range
    tax_voided_cents: int  # on invoices whose void (reversal) falls in the range
    ledger_movement_cents: int  # credits to 2100 minus debits, remittances left out
    remitted_cents: int  # paid to the tax authority in the range (source "tax_remittance")

    @property
    def net_tax_cents(self) -> int:
        return self.tax_charged_cents - self.tax_refunded_cents - self.tax_voided_cents


@dataclass(frozen=True)
class SalesTaxReport:
    start: date
    end: date
    rows: tuple[SalesTaxRow, ...]
    locations: tuple[SalesTaxLocation, ...] = field(default=())

    @property
    def net_tax_cents(self) -> int:
        return sum(loc.net_tax_cents for loc in self.locations)


def sales_tax_report(
    session: Session, start: date, end: date, *, location: str | None = None,
) -> SalesTaxReport:
    """Tax charged by location and line kind, credit-note refunds, and the ledger check."""
    if end < start:
        raise ReportError(f"the range ends ({end}) before it starts ({start})")
    locs = {loc.id: loc for loc in session.execute(select(Location)).scalars()}
    if location is not None:
        wanted = [
            loc for loc in locs.values()
            if location.strip().lower() in (loc.code.lower(), loc.name.lower())
        ]
        if not wanted:
            known = ", ".join(sorted(loc.name for loc in locs.values()))
            raise ReportError(f"unknown location {location!r} (known: {known})")
        locs = {loc.id: loc for loc in wanted}
    ids = list(locs)
    issued = (Invoice.number.is_not(None), Invoice.issue_date >= start,
              Invoice.issue_date <= end)
    lines = session.execute(
        select(InvoiceLine.location_id, InvoiceLine.kind,
               func.sum(InvoiceLine.amount_cents).filter(InvoiceLine.tax_cents != 0),
               func.sum(InvoiceLine.amount_cents).filter(InvoiceLine.tax_cents == 0),
               func.sum(InvoiceLine.tax_cents))
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(*issued, InvoiceLine.location_id.in_(ids))
        .group_by(InvoiceLine.location_id, InvoiceLine.kind)
    ).all()
    rows = sorted(
        (SalesTaxRow(locs[lid].name, kind, int(taxable or 0), int(untaxed or 0), int(tax or 0))
         for lid, kind, taxable, untaxed, tax in lines),
        key=lambda r: (r.location, r.line_kind),
    )
    charged: dict[int, int] = defaultdict(int)
    for lid, _kind, _taxable, _untaxed, tax in lines:
        charged[lid] += int(tax or 0)
    refunded = dict(session.execute(
        select(CreditNote.location_id, func.sum(CreditNote.tax_cents))
        .where(CreditNote.issue_date >= start, CreditNote.issue_date <= end,
               CreditNote.location_id.in_(ids))
        .group_by(CreditNote.location_id)
    ).all())
    reversal = aliased(JournalEntry)
    voided = dict(session.execute(
        select(Invoice.location_id, func.sum(Invoice.tax_cents))
        .join(reversal, reversal.reverses_id == Invoice.journal_entry_id)
        .where(Invoice.status == InvoiceStatus.VOID, reversal.entry_date >= start,
               reversal.entry_date <= end, Invoice.location_id.in_(ids))
        .group_by(Invoice.location_id)
    ).all())
    remittance = func.coalesce(JournalEntry.source_type, "") == REMITTANCE
    movement: dict[int, int] = defaultdict(int)
    remitted: dict[int, int] = defaultdict(int)
    for lid, is_remittance, total in session.execute(
        select(JournalLine.location_id, remittance, func.sum(JournalLine.amount_cents))
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .join(Account, Account.id == JournalLine.account_id)
        .where(Account.code == SALES_TAX_PAYABLE, JournalEntry.entry_date >= start,
               JournalEntry.entry_date <= end, JournalLine.location_id.in_(ids))
        .group_by(JournalLine.location_id, remittance)
    ).all():
        if is_remittance:
            remitted[lid] += int(total or 0)
        else:
            movement[lid] -= int(total or 0)
    summary = tuple(
        SalesTaxLocation(loc.name, loc.currency, charged[lid], int(refunded.get(lid) or 0),
                         int(voided.get(lid) or 0), movement[lid], remitted[lid])
        for lid, loc in sorted(locs.items(), key=lambda kv: kv[1].name)
    )
    return SalesTaxReport(start, end, tuple(rows), summary)
