"""Expenses: import the operator's categorized history, draft from receipts, detect duplicates,
confirm and post.

Life of an expense:

- **imported history** (``import_expenses_csv``): the operator's already-categorized past
  expenses. They are stored with status ``posted`` and ``source = "csv"``: they are booked,
  but their ledger entries live in the books the operator kept before deskbooks, so by default
  nothing is posted (``post=True`` posts each row as a balanced entry instead). They are the
  history the categorizer learns from (and ``finance.kb.sync_history`` indexes them).
- **draft** (``create_expense_draft``): a scanned receipt, with a proposed categorization and
  any duplicates flagged; nothing is posted.
- **posted** (``confirm_expense``): a person with a finance role confirms; one balanced entry
  debits the expense (or CapEx) account and credits 2500 Credit Card Payable (card), 1000
  Operating Cash (cash) or 2000 Accounts Payable (ap).
- **discarded** (``discard_expense``): e.g. a duplicate receipt.

Text read off a receipt (OCR text, item names) is data only: it is stored and can match rule
keywords, never chooses an account outside the chart's expense and CapEx accounts, and never
triggers an action.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import or_, select
from sqlmodel import Session

from finance import audit
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.bulk import insert_rows, update_rows
from finance.categorize import (
    Categorization,
    CategorizationRequest,
    Categorizer,
    LlmCategorizer,
    SimilarHistory,
    active_rule_book,
    allowed_accounts,
    normalize_vendor,
)
from finance.imports import (
    CellError,
    ImportFileError,
    ImportReport,
    Layout,
    RowCheck,
    cell_date,
    cell_money,
    read_source,
    read_table,
)
from finance.ledger import EntryDraft, Leg, post_entries, post_entry
from finance.models import Expense, ExpenseStatus, Location, Role
from finance.money import format_cents
from finance.util import chunks

if TYPE_CHECKING:
    from finance.receipts import ReceiptScan
    from finance.services import Services

log = logging.getLogger(__name__)

PaymentMethodName = Literal["card", "cash", "ap"]
CREDIT_ACCOUNTS: dict[str, str] = {"card": "2500", "cash": "1000", "ap": "2000"}
EXPENSE_CONFIRMERS = FINANCE_WRITERS | {Role.GM}
SUBMITTERS = {Role.STAFF, Role.MANAGER, Role.GM, Role.CFO, Role.ADMIN}
MAX_ROWS = 100_000
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y")


class ExpenseError(ValueError):
    """An expense operation that cannot be done; the message says why."""


class DuplicateExpense(ExpenseError):
    """The expense looks like one already recorded; confirm with ``allow_duplicate``."""

    def __init__(self, message: str, duplicate_ids: list[int]) -> None:
        super().__init__(message)
        self.duplicate_ids = duplicate_ids


# --------------------------------------------------------------------------- duplicates


def find_duplicates(session: Session, vendor: str, on: date | None, total_cents: int | None,
                    image_sha256: str | None = None, *,
                    exclude_id: int | None = None) -> list[Expense]:
    """Expenses (not discarded) with the same normalized vendor + date + total, or the same
    receipt image hash. Oldest first."""
    conditions = []
    if on is not None and total_cents is not None:
        conditions.append((Expense.expense_date == on) & (Expense.amount_cents == total_cents))
    if image_sha256:
        conditions.append(Expense.image_sha256 == image_sha256)
    if not conditions:
        return []
    stmt = select(Expense).where(
        or_(*conditions), Expense.status != ExpenseStatus.DISCARDED.value).order_by(Expense.id)
    if exclude_id is not None:
        stmt = stmt.where(Expense.id != exclude_id)
    want = normalize_vendor(vendor)
    out = []
    for exp in session.execute(stmt).scalars():
        same_image = bool(image_sha256) and exp.image_sha256 == image_sha256
        same_charge = (exp.expense_date == on and exp.amount_cents == total_cents
                       and normalize_vendor(exp.vendor_name) == want)
        if same_image or same_charge:
            out.append(exp)
    return out


def _duplicate_reason(exp: Expense, image_sha256: str | None) -> str:
    how = ("the same receipt image" if image_sha256 and exp.image_sha256 == image_sha256
           else "the same vendor, date and total")
    return (f"expense #{exp.id} ({exp.vendor_name}, {exp.expense_date}, "
            f"{format_cents(exp.amount_cents, exp.currency)}) has {how}")


# --------------------------------------------------------------------------- import

EXPENSE_LAYOUT = Layout(
    name="expenses",
    columns={
        "date": ("date", "expense date", "transaction date"),
        "vendor": ("vendor", "merchant", "payee"),
        "description": ("description", "memo"),
        "amount": ("amount", "total"),
        "currency": ("currency",),
        "account": ("account", "account code", "category"),
        "location": ("location",),
        "cost_center": ("cost center", "cost_center", "class"),
        "payment_method": ("payment method", "payment_method", "method"),
    },
    required=("date", "vendor", "amount", "account"),
)


@dataclass
class _Accounts:
    by_code: dict[str, str]
    by_name: dict[str, str]

    def find(self, text: str) -> str:
        key = text.strip()
        if key in self.by_code:
            return key
        head = key.split(" ", 1)[0].rstrip("-:")
        if head in self.by_code and head.isdigit():
            return head
        code = self.by_name.get(key.lower())
        if code is not None:
            return code
        raise CellError(f"{text!r} is not an expense or CapEx account of the chart "
                        "(give a code such as 6100, or an account name)")


def _row_key(values: tuple[Any, ...], occurrence: int) -> str:
    text = "\x1f".join("" if v is None else str(v) for v in values) + f"\x1f#{occurrence}"
    return hashlib.sha256(text.encode()).hexdigest()


def import_expenses_csv(services: Services, actor: Actor, source: bytes | str | Path, *,
                        location: str | None = None, post: bool = False,
                        dry_run: bool = False) -> ImportReport:
    """Import a categorized expense history CSV, all or nothing; re-importing adds nothing.

    Columns: date, vendor, description, amount, currency, account (+ optional location,
    cost_center, payment_method card|cash|ap). Every bad row is reported with its line number;
    with any bad row nothing is written. Raises ``ImportFileError`` for an unusable file.
    """
    data, name = read_source(source)
    report = ImportReport(file=name, kind="expenses", dry_run=dry_run)
    table = read_table(data, EXPENSE_LAYOUT, report)
    if len(table.rows) > MAX_ROWS:
        raise ImportFileError(f"{len(table.rows)} rows; the limit is {MAX_ROWS:,} per file")
    if table.unknown_columns:
        report.warnings.append(f"ignored column(s): {', '.join(table.unknown_columns)}")
    labels = {k: v[0] for k, v in EXPENSE_LAYOUT.columns.items()}
    with services.session() as session:
        require_role(session, actor, FINANCE_WRITERS, "import expenses")
        locs = {loc.code.lower(): loc for loc in session.execute(select(Location)).scalars()}
        by_name = {loc.name.lower(): loc for loc in locs.values()}
        known = ", ".join(sorted(loc.code for loc in locs.values()))
        default_loc = None
        if location:
            key = location.strip().lower()
            default_loc = locs.get(key) or by_name.get(key)
            if default_loc is None:
                raise ImportFileError(f"no location {location!r} (known: {known or 'none'})")
        elif len(locs) == 1:
            default_loc = next(iter(locs.values()))
        book = active_rule_book(services, session)
        allowed = allowed_accounts(services, session)
        accounts = _Accounts(allowed, {n.lower(): c for c, n in allowed.items()})
        rows: list[dict[str, Any]] = []
        seen: Counter[tuple[Any, ...]] = Counter()
        for line, cells in table.rows:
            report.rows += 1
            check = RowCheck(report, line, cells, labels)
            loc = default_loc
            if cells.get("location"):
                key = cells["location"].strip().lower()
                loc = locs.get(key) or by_name.get(key)
                if loc is None:
                    check.fail("location", f"no location {cells['location']!r}")
            elif loc is None:
                check.fail("location", "no location: add a location column or pass "
                                       f"--location (known: {known})")
            day = check.get("date", lambda t: cell_date(t, DATE_FORMATS), required=True)
            vendor = check.get("vendor", required=True)
            if vendor and (len(vendor) > 200 or not normalize_vendor(vendor)):
                check.fail("vendor", "must be 1-200 characters with letters or digits")
            description = check.get("description") or None
            if description and len(description) > 500:
                check.fail("description", "longer than 500 characters")
            amount = check.get("amount", cell_money, required=True)
            if amount is not None and amount == 0:
                check.fail("amount", "must not be zero")
            account = check.get("account", accounts.find, required=True)
            currency = (cells.get("currency") or "").strip().upper() or None
            if loc is not None:
                if currency is None:
                    currency = loc.currency
                elif currency != loc.currency:
                    check.fail("currency", f"{currency} does not match location {loc.code}'s "
                                           f"currency {loc.currency}")
                if day is not None and day > services.today(loc.timezone):
                    check.fail("date", f"{day} is in the future")
            cost_center = check.get("cost_center") or None
            if cost_center and len(cost_center) > 40:
                check.fail("cost_center", "longer than 40 characters")
            method = (check.get("payment_method") or "card").lower()
            if method not in CREDIT_ACCOUNTS:
                check.fail("payment_method", f"must be card, cash or ap, got {method!r}")
            if check.bad or loc is None:
                continue
            content = (day, vendor.strip(), description or "", amount, currency, account,
                       loc.code, cost_center or "", method)
            seen[content] += 1
            rows.append({
                "vendor_name": " ".join(vendor.split()), "location_id": loc.id,
                "expense_date": day, "amount_cents": amount, "tax_cents": 0,
                "currency": currency, "account_code": account,
                "cost_center": cost_center or book.cost_centers.get(account),
                "description": description, "payment_method": method,
                "status": ExpenseStatus.POSTED.value, "source": "csv",
                "fields": {"import": {"file": name, "line": line}},
                "category_reason": f"Imported from {name} line {line}"[:500],
                "submitted_by": actor.label[:40], "confirmed_by": actor.label[:40],
                "import_key": _row_key(content, seen[content]),
            })
        if not report.ok:
            session.rollback()
            return report
        existing: set[str] = set()
        keys = [r["import_key"] for r in rows]
        for chunk in chunks(keys, 1000):
            existing |= set(session.execute(select(Expense.import_key).where(
                Expense.import_key.in_(chunk))).scalars())  # type: ignore[union-attr]
        new = [r for r in rows if r["import_key"] not in existing]
        report.skipped_existing = len(rows) - len(new)
        report.imported = len(new)
        if dry_run or not new:
            session.rollback()
            return report
        ids = insert_rows(session, Expense, new)
        if post:
            drafts = [_entry_draft(r | {"id": i}, r["account_code"], r["payment_method"])
                      for r, i in zip(new, ids, strict=True)]
            entry_ids = post_entries(session, drafts, actor=actor.label, audit_each=False)
            update_rows(session, Expense, [{"b_id": i, "journal_entry_id": e}
                                           for i, e in zip(ids, entry_ids, strict=True)])
            report.extra["posted_entries"] = len(entry_ids)
        audit.record(session, actor=actor.label, action="expense.import", entity_type="expense",
                     entity_id=f"{ids[0]}-{ids[-1]}",
                     details={"file": name, "rows": report.rows, "imported": len(new),
                              "skipped_existing": report.skipped_existing, "posted": post})
        report.extra["expense_ids"] = ids
    return report


# --------------------------------------------------------------------------- posting


def _entry_draft(exp: dict[str, Any], account: str, method: str) -> EntryDraft:
    credit = CREDIT_ACCOUNTS[method]
    amount = int(exp["amount_cents"])
    memo = f"{exp['vendor_name']}" + (f": {exp['description']}" if exp.get("description") else "")
    legs = [
        Leg(account, amount, exp["location_id"], vendor_id=exp.get("vendor_id"),
            memo=memo[:300], currency=exp["currency"]),
        Leg(credit, -amount, exp["location_id"], vendor_id=exp.get("vendor_id"),
            memo=f"{method} payment", currency=exp["currency"]),
    ]
    return EntryDraft(exp["expense_date"], f"Expense #{exp['id']}: {memo}"[:300], legs,
                      source_type="expense", source_id=exp["id"],
                      idempotency_key=f"expense:{exp['id']}")


@dataclass(frozen=True)
class DraftResult:
    expense_id: int
    categorization: Categorization
    duplicates: list[int] = field(default_factory=list)
    duplicate_reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"expense_id": self.expense_id, "categorization": self.categorization.as_dict(),
                "duplicates": self.duplicates, "duplicate_reasons": self.duplicate_reasons}


def create_expense_draft(services: Services, actor: Actor, scan: ReceiptScan, *,
                         location: str | int, vendor: str | None = None, on: date | None = None,
                         total_cents: int | None = None, description: str | None = None,
                         mcc: str | None = None, source: str = "slack",
                         history: SimilarHistory | None = None,
                         llm: LlmCategorizer | None = None) -> DraftResult:
    """A draft expense from a scanned receipt, with a proposed categorization and duplicates
    flagged. ``vendor`` / ``on`` / ``total_cents`` override what the scan read (a person's
    corrections). Nothing is posted."""
    fields = scan.fields
    vendor = (vendor or fields.vendor or "").strip()
    on = on or fields.date
    total = total_cents if total_cents is not None else fields.total_cents
    missing = [n for n, v in (("vendor", vendor), ("date", on), ("total", total)) if not v]
    if missing:
        raise ExpenseError(f"the receipt has no readable {', '.join(missing)}; enter "
                           f"{'it' if len(missing) == 1 else 'them'} by hand")
    assert on is not None and total is not None
    if description is None:
        items = [i.description for i in fields.items if i.description][:5]
        description = ", ".join(items)[:500] or None
    with services.session() as session:
        require_role(session, actor, SUBMITTERS, "submit a receipt")
        categorizer = Categorizer.load(services, session, history=history, llm=llm)
        loc_id = categorizer.location_id_of(location)
        if loc_id is None:
            raise ExpenseError("a receipt needs a location")
        loc = session.get(Location, loc_id)
        assert loc is not None
        currency = (fields.currency or loc.currency).upper()
        if currency != loc.currency:
            raise ExpenseError(f"the receipt is in {currency} but {loc.code} keeps its books in "
                               f"{loc.currency}; enter the converted total by hand")
        result = categorizer.categorize(session, CategorizationRequest(
            vendor, total, description, on, loc_id, mcc))
        dupes = find_duplicates(session, vendor, on, total, scan.sha256)
        exp = Expense(
            vendor_name=vendor[:200], location_id=loc_id, expense_date=on, amount_cents=total,
            tax_cents=fields.tax_cents or 0, currency=currency,
            account_code=result.account_code, cost_center=result.cost_center,
            description=description, card_last4=fields.card_last4,
            status=ExpenseStatus.DRAFT.value, source=source[:12], image_sha256=scan.sha256,
            ocr_text=scan.text,
            fields=fields.as_dict() | {"suspicious_text": fields.suspicious_text},
            category_confidence_pct=result.confidence_pct, category_reason=result.reason[:500],
            submitted_by=actor.label[:40],
        )
        session.add(exp)
        session.flush()
        assert exp.id is not None
        audit.record(session, actor=actor.label, action="expense.draft", entity_type="expense",
                     entity_id=exp.id,
                     details={"vendor": vendor[:120], "total_cents": total, "date": on.isoformat(),
                              "proposed_account": result.account_code,
                              "duplicates": [d.id for d in dupes]})
        return DraftResult(exp.id, result, [d.id for d in dupes if d.id is not None],
                           [_duplicate_reason(d, scan.sha256) for d in dupes])


@dataclass(frozen=True)
class ConfirmResult:
    expense_id: int
    journal_entry_id: int
    account_code: str
    credit_account: str
    amount_cents: int
    already_posted: bool = False
    duplicate_of: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _locked_expense(session: Session, expense_id: int) -> Expense:
    exp = session.execute(select(Expense).where(Expense.id == expense_id)
                          .with_for_update()).scalar_one_or_none()
    if exp is None:
        raise ExpenseError(f"no expense #{expense_id}")
    return exp


def confirm_expense(services: Services, actor: Actor, expense_id: int, *,
                    account_code: str | None = None, cost_center: str | None = None,
                    payment_method: PaymentMethodName | None = None,
                    allow_duplicate: bool = False) -> ConfirmResult:
    """Post a draft expense as one balanced entry; a second confirm changes nothing.

    Debits ``account_code`` (default: the proposed account) and credits 2500 Credit Card
    Payable (card), 1000 Operating Cash (cash) or 2000 Accounts Payable (ap). A likely
    duplicate is refused with ``DuplicateExpense`` unless ``allow_duplicate``.
    """
    with services.session() as session:
        require_role(session, actor, EXPENSE_CONFIRMERS, "confirm expenses")
        exp = _locked_expense(session, expense_id)
        if exp.status == ExpenseStatus.POSTED.value:
            if exp.journal_entry_id is None:
                raise ExpenseError(f"expense #{expense_id} is imported history, already booked "
                                   "outside deskbooks")
            return ConfirmResult(exp.id, exp.journal_entry_id, exp.account_code or "",  # type: ignore[arg-type]
                                 CREDIT_ACCOUNTS.get(exp.payment_method, ""), exp.amount_cents,
                                 already_posted=True)
        if exp.status != ExpenseStatus.DRAFT.value:
            raise ExpenseError(f"expense #{expense_id} is {exp.status}; only drafts can be posted")
        method = (payment_method or exp.payment_method or "card").lower()
        if method not in CREDIT_ACCOUNTS:
            raise ExpenseError(f"payment method must be card, cash or ap, got {method!r}")
        book = active_rule_book(services, session)
        allowed = allowed_accounts(services, session)
        account = (account_code or exp.account_code or "").strip()
        if not account:
            raise ExpenseError(f"expense #{expense_id} has no account yet; choose one")
        if account not in allowed:
            raise ExpenseError(f"{account} is not an expense or CapEx account of the chart")
        if cost_center is not None and len(cost_center) > 40:
            raise ExpenseError("the cost center is longer than 40 characters")
        dupes = find_duplicates(session, exp.vendor_name, exp.expense_date, exp.amount_cents,
                                exp.image_sha256, exclude_id=exp.id)
        if dupes and not allow_duplicate:
            reasons = "; ".join(_duplicate_reason(d, exp.image_sha256) for d in dupes[:3])
            raise DuplicateExpense(f"expense #{expense_id} looks like a duplicate: {reasons}. "
                                   "Discard it, or confirm it again as not a duplicate.",
                                   [d.id for d in dupes if d.id is not None])
        row = {"id": exp.id, "vendor_name": exp.vendor_name, "description": exp.description,
               "amount_cents": exp.amount_cents, "location_id": exp.location_id,
               "currency": exp.currency, "expense_date": exp.expense_date,
               "vendor_id": exp.vendor_id}
        entry = post_entry(session, _entry_draft(row, account, method), actor=actor.label)
        changed = account != exp.account_code
        exp.account_code = account
        exp.cost_center = cost_center or (exp.cost_center if not changed else None) or \
            book.cost_centers.get(account)
        exp.payment_method = method
        exp.status = ExpenseStatus.POSTED.value
        exp.confirmed_by = actor.label[:40]
        exp.journal_entry_id = entry.id
        session.add(exp)
        audit.record(session, actor=actor.label, action="expense.confirm", entity_type="expense",
                     entity_id=exp.id,
                     details={"account": account, "credit": CREDIT_ACCOUNTS[method],
                              "amount_cents": exp.amount_cents, "entry": entry.id,
                              "account_changed": changed,
                              "duplicate_override": [d.id for d in dupes]})
        session.flush()
        assert exp.id is not None and entry.id is not None
        return ConfirmResult(exp.id, entry.id, account, CREDIT_ACCOUNTS[method],
                             exp.amount_cents, duplicate_of=[d.id for d in dupes if d.id])


def discard_expense(services: Services, actor: Actor, expense_id: int, *, reason: str) -> bool:
    """Discard a draft (e.g. a duplicate receipt); returns False when it was already discarded."""
    if not reason or not reason.strip():
        raise ExpenseError("discarding an expense needs a reason")
    with services.session() as session:
        require_role(session, actor, EXPENSE_CONFIRMERS, "discard expenses")
        exp = _locked_expense(session, expense_id)
        if exp.status == ExpenseStatus.DISCARDED.value:
            return False
        if exp.status != ExpenseStatus.DRAFT.value:
            raise ExpenseError(f"expense #{expense_id} is {exp.status}; posted expenses are "
                               "corrected with a reversing entry")
        exp.status = ExpenseStatus.DISCARDED.value
        session.add(exp)
        audit.record(session, actor=actor.label, action="expense.discard", entity_type="expense",
                     entity_id=exp.id, details={"reason": reason.strip()[:300]})
        return True
