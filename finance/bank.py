"""Bank statements (OFX/QFX and CSV) and bank reconciliation.

OFX and QFX files are read with ``ofxtools`` (SGML OFX 1.x and XML OFX 2.x). Its strict
converter fails a whole statement on one bad transaction, so each ``<STMTTRN>`` is converted on
its own: every bad one is reported with its line and field, and, as everywhere in the imports,
a file with any bad row writes nothing. Fallbacks for real-world quirks: a missing or broken
OFX header (files that start straight at ``<OFX>``) is replaced by a standard one and the file
parsed again; account ids longer than the spec allows are kept as text; a blank ledger balance
is reported as a warning (the transactions are fine) rather than refusing the file.

The calendar date of a bank line is the date the bank wrote (the first eight digits of
DTPOSTED), not that instant converted to UTC: banks post in their own local days.

CSV statements need a column mapping (:class:`CsvMapping`): a date column and its format, an
amount column (or debit and credit columns), and optional payee, memo, id and balance columns.
Rows without an id get a stable one from their content plus the occurrence number of identical
rows in the file, so re-importing the same export adds nothing.

Reconciliation (:func:`reconcile`) matches bank lines to the books by amount and date: member
payments that go straight to the bank (ACH, cash, check), card payouts and bank deposits posted
in the ledger, paid bills and posted expenses, and processor payout batches (card payments of
one location and local day, net of fees) that are still in Payment Processor Clearing (1050);
matching such a batch posts the payout (Dr 1000 net, Dr 6600 fees, Cr 1050 gross). Book dates
are local dates of the location (a card payment stamped 2026-03-01T02:00Z belongs to Feb 28 in
Los Angeles), and a bank line may post the same day or up to ``window_days`` later.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlmodel import Session

from finance import audit, ledger
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.imports import (
    CellError,
    ImportFileError,
    ImportReport,
    RowError,
    cell_date,
    decode_text,
    norm_header,
    read_rows,
    read_source,
)
from finance.ledger import EntryDraft, Leg
from finance.models import (
    Account,
    BankTransaction,
    Bill,
    BillStatus,
    Expense,
    ExpenseStatus,
    JournalEntry,
    JournalLine,
    Location,
    Payment,
    PaymentMethod,
)
from finance.money import MoneyError, format_cents, parse_amount
from finance.util import chunks

OFX_AMOUNT = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
SGML_HEADER = (b"OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\n"
               b"ENCODING:USASCII\r\nCHARSET:1252\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\n"
               b"NEWFILEUID:NONE\r\n\r\n")


# --------------------------------------------------------------------------- parsed statements


@dataclass(frozen=True)
class BankLine:
    line: int
    fitid: str
    posted_on: date
    amount_cents: int
    payee: str | None
    memo: str | None


@dataclass
class Statement:
    account: str  # derived from the file (bank id and account id) or given by the user
    currency: str
    lines: list[BankLine] = field(default_factory=list)
    ledger_balance_cents: int | None = None
    balance_as_of: date | None = None
    start: date | None = None
    end: date | None = None

    @property
    def total_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)

    def as_dict(self) -> dict[str, Any]:
        opening = (None if self.ledger_balance_cents is None
                   else self.ledger_balance_cents - self.total_cents)
        return {"account": self.account, "currency": self.currency,
                "transactions": len(self.lines), "total_cents": self.total_cents,
                "ledger_balance_cents": self.ledger_balance_cents,
                "balance_as_of": self.balance_as_of.isoformat() if self.balance_as_of else None,
                "implied_opening_balance_cents": opening,
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None}


# --------------------------------------------------------------------------- OFX


def _ofx_tree(data: bytes) -> Any:
    """Parse with ofxtools; on a missing or broken header, retry under a standard one."""
    from ofxtools.header import OFXHeaderError
    from ofxtools.Parser import OFXTree, ParseError

    def parse(raw: bytes) -> Any:
        tree = OFXTree()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree.parse(io.BytesIO(raw))
        return tree._root  # the element tree before ofxtools' whole-file conversion

    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if b"<OFX>" in stripped.upper() and b"</OFX>" not in stripped.upper():
        raise ImportFileError("the OFX file is cut short: it has no closing </OFX> tag")
    try:
        try:
            return parse(stripped)
        except OFXHeaderError:
            start = stripped.upper().find(b"<OFX>")
            if start < 0:
                raise ImportFileError("not an OFX/QFX file: no <OFX> element found") from None
            return parse(SGML_HEADER + stripped[start:])
    except ImportFileError:
        raise
    except (OFXHeaderError, ParseError, ValueError, IndexError, KeyError) as exc:
        raise ImportFileError(f"not a readable OFX/QFX file: {exc}".strip()[:300]) from None


def _line_numbers(data: bytes) -> list[int]:
    """The line on which each <STMTTRN> starts, in file order."""
    text = data.decode("latin-1")
    return [text.count("\n", 0, m.start()) + 1
            for m in re.finditer(r"<STMTTRN>", text, flags=re.IGNORECASE)]


def _text(elem: Any, path: str) -> str | None:
    value = elem.findtext(path)
    if value is None:
        return None
    return value.strip()


def _ofx_date(raw: str) -> date:
    return date(int(raw[0:4]), int(raw[4:6]), int(raw[6:8]))


def _ofx_amount(raw: str | None) -> int:
    if raw is None or raw == "":
        raise CellError("missing amount")
    if not OFX_AMOUNT.match(raw):
        raise CellError(f"not an amount: {raw!r}")
    try:
        return parse_amount(raw.replace(",", "."))
    except MoneyError as exc:
        raise CellError(str(exc)) from None


def parse_ofx(data: bytes) -> tuple[list[Statement], list[RowError], list[str]]:
    """Statements, bad transactions and warnings of an OFX/QFX file (raises on an unreadable
    file)."""
    from ofxtools.models.bank.stmt import STMTTRN
    from ofxtools.Types import DateTime

    root = _ofx_tree(data)
    starts = _line_numbers(data)
    statements: list[Statement] = []
    errors: list[RowError] = []
    notes: list[str] = []
    n = 0
    for stmt in root.iter():
        if stmt.tag not in ("STMTRS", "CCSTMTRS"):
            continue
        acct = stmt.find("BANKACCTFROM") if stmt.tag == "STMTRS" else stmt.find("CCACCTFROM")
        acctid = _text(acct, "ACCTID") if acct is not None else None
        if not acctid:
            raise ImportFileError("a statement in this file has no account id (ACCTID)")
        bankid = _text(acct, "BANKID") if acct is not None else None
        currency = (_text(stmt, "CURDEF") or "").upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ImportFileError(f"statement for account {acctid} has no valid currency "
                                  f"(CURDEF {currency!r})")
        name = f"{bankid}:{acctid}" if bankid else acctid
        st = Statement(account=name[:60], currency=currency)
        trans = stmt.find("BANKTRANLIST")
        if trans is not None:
            for key in ("DTSTART", "DTEND"):
                raw = _text(trans, key)
                try:
                    day = _ofx_date(raw) if raw else None
                except ValueError:
                    day = None
                setattr(st, "start" if key == "DTSTART" else "end", day)
        seen: dict[str, int] = {}
        for elem in (trans.iter("STMTTRN") if trans is not None else ()):
            n += 1
            line = starts[n - 1] if n - 1 < len(starts) else n
            bad = False

            def fail(column: str | None, reason: str, line: int = line) -> None:
                nonlocal bad
                errors.append(RowError(line, column, reason))
                bad = True

            fitid = _text(elem, "FITID")
            if not fitid:
                fail("FITID", "missing transaction id")
            raw_date = _text(elem, "DTPOSTED")
            if not raw_date:
                fail("DTPOSTED", "missing posting date")
            else:
                try:
                    DateTime(required=True).convert(raw_date)
                except Exception as exc:  # OFXSpecError or ValueError, both readable
                    fail("DTPOSTED", f"not an OFX date/time: {raw_date!r} ({exc})")
            try:
                amount = _ofx_amount(_text(elem, "TRNAMT"))
            except CellError as exc:
                fail("TRNAMT", str(exc))
            if not bad:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        STMTTRN.from_etree(elem)
                except Exception as exc:  # ofxtools raises many types; the message is clear
                    message = str(exc)
                    m = re.match(r"Can't set STMTTRN\.(\w+) to (.*)", message)
                    fail(m.group(1).upper() if m else None, m.group(2) if m else message[:200])
            if bad:
                continue
            assert fitid is not None and raw_date is not None
            if fitid in seen:
                fail("FITID", f"transaction id {fitid} repeats line {seen[fitid]}")
                continue
            seen[fitid] = line
            payee = _text(elem, "NAME") or _text(elem, "PAYEE/NAME")
            memo = _text(elem, "MEMO")
            st.lines.append(BankLine(line, fitid[:120], _ofx_date(raw_date), amount,
                                     payee[:200] if payee else None,
                                     memo[:300] if memo else None))
        bal = stmt.find("LEDGERBAL")
        if bal is not None:
            raw = _text(bal, "BALAMT")
            try:
                st.ledger_balance_cents = _ofx_amount(raw)
                as_of = _text(bal, "DTASOF")
                st.balance_as_of = _ofx_date(as_of) if as_of else None
            except (CellError, ValueError):
                notes.append(f"account {acctid}: ledger balance {raw!r} is blank or not an "
                             "amount; balance not checked")
        statements.append(st)
    if not statements:
        raise ImportFileError("no bank or credit-card statement found in this OFX file")
    return statements, errors, notes


# --------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class CsvMapping:
    """Which CSV columns hold what. ``amount`` or ``debit``/``credit`` is required."""

    date: str
    amount: str | None = None
    debit: str | None = None
    credit: str | None = None
    payee: str | None = None
    memo: str | None = None
    id: str | None = None
    balance: str | None = None
    date_format: str = "%Y-%m-%d"
    negate: bool = False  # card statements that list charges as positive amounts

    FIELDS = ("date", "amount", "debit", "credit", "payee", "memo", "id", "balance",
              "date_format", "negate")

    def __post_init__(self) -> None:
        if not self.date:
            raise ImportFileError("the mapping needs a date column")
        if not self.amount and not (self.debit or self.credit):
            raise ImportFileError("the mapping needs an amount column, or debit and credit "
                                  "columns")
        if self.amount and (self.debit or self.credit):
            raise ImportFileError("map either an amount column or debit/credit columns, not "
                                  "both")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CsvMapping:
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise ImportFileError(f"unknown mapping keys: {', '.join(unknown)}; use "
                                  f"{', '.join(cls.FIELDS)}")
        values: dict[str, Any] = {k: (str(v) if k != "negate" else v)
                                  for k, v in data.items() if v is not None}
        if isinstance(values.get("negate"), str):
            values["negate"] = values["negate"].lower() in ("1", "true", "yes")
        return cls(**values)

    @classmethod
    def from_options(cls, items: Sequence[str]) -> CsvMapping:
        """From ``key=Column name`` pairs, or a single path to a YAML file."""
        if len(items) == 1 and "=" not in items[0]:
            path = Path(items[0])
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ImportFileError(f"cannot read mapping {path}: {exc.strerror}") from None
            except yaml.YAMLError as exc:
                raise ImportFileError(f"mapping {path} is not valid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise ImportFileError(f"mapping {path} must be a YAML mapping of key: column")
            return cls.from_dict(data)
        pairs = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ImportFileError(f"mapping {item!r} must look like key=Column name")
            pairs[key.strip()] = value.strip()
        return cls.from_dict(pairs)


def parse_bank_csv(data: bytes, mapping: CsvMapping, *, account: str,
                   currency: str = "USD") -> tuple[Statement, list[RowError], list[str]]:
    """One statement from a bank CSV export read through ``mapping``."""
    report = ImportReport(file="", kind="bank")
    header, rows = read_rows(decode_text(data), report)
    index = {norm_header(h): i for i, h in enumerate(header) if h}
    cols: dict[str, int] = {}
    for key in ("date", "amount", "debit", "credit", "payee", "memo", "id", "balance"):
        name = getattr(mapping, key)
        if name:
            i = index.get(norm_header(name))
            if i is None:
                raise ImportFileError(f"the mapping names column {name!r} for {key}, but the "
                                      f"header has {', '.join(h for h in header if h)}")
            cols[key] = i
    st = Statement(account=account, currency=currency)
    errors: list[RowError] = []
    notes: list[str] = []
    balances: list[tuple[date, int, int]] = []  # (date, balance, amount) in file order
    occurrences: dict[str, int] = defaultdict(int)
    ids: dict[str, int] = {}
    width = len(header)
    for line, cells in rows:
        if any(c.strip() for c in cells[width:]):
            errors.append(RowError(line, None, f"the row has {len(cells)} cells but the header "
                                               f"has {width} columns"))
            continue

        def cell(key: str, cells: list[str] = cells) -> str:
            i = cols.get(key)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        bad = False

        def fail(key: str, reason: str, line: int = line) -> None:
            nonlocal bad
            errors.append(RowError(line, getattr(mapping, key), reason))
            bad = True

        day = None
        try:
            day = cell_date(cell("date"), (mapping.date_format,)) if cell("date") else None
            if day is None:
                fail("date", "required value is empty")
        except CellError as exc:
            fail("date", str(exc))
        amount = 0
        try:
            if mapping.amount:
                if not cell("amount"):
                    fail("amount", "required value is empty")
                else:
                    amount = parse_amount(cell("amount"))
            else:
                debit = abs(parse_amount(cell("debit"))) if cell("debit") else 0
                credit = abs(parse_amount(cell("credit"))) if cell("credit") else 0
                if not cell("debit") and not cell("credit"):
                    fail("debit" if mapping.debit else "credit",
                         "both debit and credit are empty")
                amount = credit - debit
        except MoneyError as exc:
            fail("amount" if mapping.amount else "debit", str(exc))
        if mapping.negate:
            amount = -amount
        balance = None
        if mapping.balance and cell("balance"):
            try:
                balance = parse_amount(cell("balance"))
            except MoneyError as exc:
                fail("balance", str(exc))
        if bad or day is None:
            continue
        payee, memo = cell("payee") or None, cell("memo") or None
        fitid = cell("id")
        if fitid:
            if fitid in ids:
                fail("id", f"transaction id {fitid} repeats line {ids[fitid]}")
                continue
            ids[fitid] = line
        else:
            content = f"{day.isoformat()}|{amount}|{payee or ''}|{memo or ''}"
            occurrences[content] += 1
            digest = hashlib.sha256(content.encode()).hexdigest()[:24]
            fitid = f"csv:{digest}:{occurrences[content]}"
        st.lines.append(BankLine(line, fitid[:120], day, amount,
                                 payee[:200] if payee else None, memo[:300] if memo else None))
        if balance is not None:
            balances.append((day, balance, amount))
    if st.lines:
        st.start = min(ln.posted_on for ln in st.lines)
        st.end = max(ln.posted_on for ln in st.lines)
    if balances and not errors:
        descending = [b[0] for b in balances] == sorted((b[0] for b in balances), reverse=True)
        ordered = list(reversed(balances)) if descending and balances[0][0] != balances[-1][0] \
            else balances
        st.ledger_balance_cents = ordered[-1][1]
        st.balance_as_of = ordered[-1][0]
        for prev, cur in zip(ordered, ordered[1:], strict=False):
            if prev[1] + cur[2] != cur[1]:
                notes.append(f"running balance jumps on {cur[0]}: {format_cents(prev[1])} "
                             f"{format_cents(cur[2])} != {format_cents(cur[1])}")
                break
    return st, errors, notes


# --------------------------------------------------------------------------- import


def import_bank(
    services: Any,
    actor: Actor,
    source: bytes | str | Path,
    *,
    account: str | None = None,
    format: str | None = None,
    mapping: CsvMapping | None = None,
    currency: str = "USD",
    file: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import a bank statement (OFX/QFX or CSV) into ``bank_transaction``; all or nothing.

    ``format`` is ``ofx`` or ``csv`` (default: from the file name or content). CSV needs
    ``mapping`` and ``account``. Re-importing adds nothing (unique bank account + FITID).
    """
    data, name = read_source(source)
    name = file or name
    fmt = (format or "").lower() or _guess_format(name, data)
    if fmt in ("qfx", "ofx"):
        statements, errors, notes = parse_ofx(data)
        if account:
            if len(statements) > 1:
                raise ImportFileError(
                    f"the file holds {len(statements)} accounts "
                    f"({', '.join(s.account for s in statements)}); import it without "
                    "--account to keep them apart")
            statements[0].account = account[:60]
    elif fmt == "csv":
        if mapping is None:
            raise ImportFileError("a CSV bank statement needs a column mapping (--mapping)")
        if not account:
            raise ImportFileError("a CSV bank statement needs --account (the bank account name)")
        if not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise ImportFileError(f"not a currency code: {currency!r}")
        st, errors, notes = parse_bank_csv(data, mapping, account=account[:60],
                                           currency=currency.upper())
        statements = [st]
    else:
        raise ImportFileError(f"unknown bank statement format {fmt!r}; use ofx, qfx or csv")
    report = ImportReport(file=name, kind="bank", dry_run=dry_run, warnings=notes,
                          rejected=list(errors))
    report.rows = sum(len(s.lines) for s in statements) + len({e.line for e in errors})
    report.extra["statements"] = [s.as_dict() for s in statements]
    with services.session() as session:
        require_role(session, actor, FINANCE_WRITERS, "import bank statements")
        if report.rejected:
            return report
        new_rows: list[dict[str, Any]] = []
        for st in statements:
            have: set[str] = set()
            for part in chunks([ln.fitid for ln in st.lines], 1000):
                have |= set(session.execute(select(BankTransaction.fitid).where(
                    BankTransaction.bank_account == st.account,
                    BankTransaction.fitid.in_(list(part)))).scalars())  # type: ignore[attr-defined]
            for ln in st.lines:
                if ln.fitid in have:
                    report.skipped_existing += 1
                    continue
                new_rows.append({"bank_account": st.account, "fitid": ln.fitid,
                                 "posted_on": ln.posted_on, "amount_cents": ln.amount_cents,
                                 "currency": st.currency, "payee": ln.payee, "memo": ln.memo})
        report.imported = len(new_rows)
        if dry_run or not new_rows:
            return report
        for part in chunks(new_rows, 5000):
            table = BankTransaction.__table__  # type: ignore[attr-defined]
            session.execute(table.insert(), list(part))
        audit.record(session, actor=actor.label, action="import.bank", entity_type="import",
                     entity_id=name[:60],
                     details={"accounts": [s.account for s in statements],
                              "rows": report.rows, "imported": report.imported,
                              "skipped_existing": report.skipped_existing,
                              "sha256": hashlib.sha256(data).hexdigest()})
    return report


def _guess_format(name: str, data: bytes) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix in ("ofx", "qfx", "csv"):
        return suffix
    head = data[:4096].upper()
    return "ofx" if (b"OFXHEADER" in head or b"<OFX>" in head) else "csv"


# --------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class BookItem:
    """Something in the books that should show up on the bank statement."""

    type: str  # payment / payout / deposit / bill / expense / card_batch
    id: int  # the record id (for card_batch: the location id)
    on: date  # local date of the location
    amount_cents: int  # as the bank would show it: money in positive
    location_id: int
    description: str
    fee_cents: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "date": self.on.isoformat(),
                "amount_cents": self.amount_cents, "location_id": self.location_id,
                "description": self.description}


@dataclass(frozen=True)
class ReconMatch:
    bank_id: int
    fitid: str
    posted_on: date
    amount_cents: int
    payee: str | None
    matched_type: str
    matched_id: int
    book_date: date | None
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {"bank_id": self.bank_id, "fitid": self.fitid,
                "posted_on": self.posted_on.isoformat(), "amount_cents": self.amount_cents,
                "payee": self.payee, "matched_type": self.matched_type,
                "matched_id": self.matched_id,
                "book_date": self.book_date.isoformat() if self.book_date else None,
                "description": self.description}


@dataclass
class ReconReport:
    account: str
    start: date
    end: date
    matched: list[ReconMatch]
    unmatched_bank: list[dict[str, Any]]
    unmatched_book: list[BookItem]
    summary_text: str
    newly_matched: int = 0
    in_transit_cents: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "matched": [m.as_dict() for m in self.matched],
                "newly_matched": self.newly_matched,
                "unmatched_bank": self.unmatched_bank,
                "unmatched_book": [b.as_dict() for b in self.unmatched_book],
                "in_transit_cents": self.in_transit_cents, "summary_text": self.summary_text}


class ReconcileError(ValueError):
    """Reconciliation cannot run (unknown account, bad range)."""


TYPE_ORDER = {"payment": 0, "deposit": 1, "payout": 2, "bill": 3, "expense": 4, "card_batch": 5}


def reconcile(
    services: Any,
    actor: Actor,
    bank_account: str,
    start: date | None = None,
    end: date | None = None,
    *,
    window_days: int = 5,
    dry_run: bool = False,
) -> ReconReport:
    """Match the account's bank lines in [start, end] to the books; record the matches.

    Defaults: the account's first and last bank dates. Already matched lines stay matched.
    """
    if window_days < 0:
        raise ReconcileError("the matching window cannot be negative")
    with services.session() as session:
        require_role(session, actor, FINANCE_WRITERS, "reconcile bank accounts")
        t = BankTransaction.__table__.c  # type: ignore[attr-defined]
        first, last = session.execute(
            select(func.min(t.posted_on), func.max(t.posted_on))
            .where(t.bank_account == bank_account)).one()
        if first is None:
            raise ReconcileError(f"no bank lines for account {bank_account!r}; import a "
                                 "statement first")
        start = start or first
        end = end or last
        if end < start:
            raise ReconcileError(f"the range ends ({end}) before it starts ({start})")
        lines = list(session.execute(
            select(BankTransaction).where(BankTransaction.bank_account == bank_account,
                                          BankTransaction.posted_on >= start,
                                          BankTransaction.posted_on <= end)
            .order_by(BankTransaction.posted_on, BankTransaction.id)).scalars())
        book = _book_items(session, start - timedelta(days=window_days), end)
        taken = {(r.matched_type, r.matched_id) for r in session.execute(
            select(t.matched_type, t.matched_id).where(t.matched_type.is_not(None)))}
        by_amount: dict[int, list[BookItem]] = defaultdict(list)
        for item in book:
            if (item.type, item.id) not in taken:
                by_amount[item.amount_cents].append(item)
        names = {loc.id: loc.name for loc in session.execute(select(Location)).scalars()}
        matched: list[ReconMatch] = []
        unmatched_bank: list[BankTransaction] = []
        newly = 0
        batches: list[BankTransaction] = []
        for bl in lines:
            if bl.matched_type is not None:
                matched.append(ReconMatch(bl.id, bl.fitid,  # type: ignore[arg-type]
                                          bl.posted_on, bl.amount_cents,
                                          bl.payee, bl.matched_type, bl.matched_id or 0, None,
                                          "matched earlier"))
                continue
            item = _best(by_amount.get(bl.amount_cents, []), bl.posted_on, window_days)
            if item is None:
                batches.append(bl)
                continue
            by_amount[item.amount_cents].remove(item)
            bl.matched_type, bl.matched_id = item.type, item.id
            newly += 1
            matched.append(ReconMatch(bl.id, bl.fitid,  # type: ignore[arg-type]
                                          bl.posted_on, bl.amount_cents,
                                      bl.payee, item.type, item.id, item.on, item.description))
        # bank credits left over: processor payouts of card payments still in clearing
        pending = _card_batches(session, start - timedelta(days=window_days), end)
        for bl in batches:
            batch = None
            if bl.amount_cents > 0:
                batch = _best([b for b in pending if b.amount_cents == bl.amount_cents],
                              bl.posted_on, window_days)
            if batch is not None and _in_clearing(session, batch, bl.posted_on):
                pending.remove(batch)
                entry = _post_payout(session, batch, bl, actor, names)
                bl.matched_type, bl.matched_id = "payout", entry
                newly += 1
                matched.append(ReconMatch(bl.id, bl.fitid,  # type: ignore[arg-type]
                                          bl.posted_on, bl.amount_cents,
                                          bl.payee, "payout", entry, batch.on,
                                          batch.description))
            else:
                unmatched_bank.append(bl)
        matched_keys = {(m.matched_type, m.matched_id) for m in matched}
        unmatched_book = sorted(
            (b for items in by_amount.values() for b in items
             if start <= b.on <= end and (b.type, b.id) not in matched_keys),
            key=lambda b: (b.on, TYPE_ORDER[b.type], b.id))
        in_transit = ledger.balance(session, "1050", end=end)
        summary = _summary(bank_account, start, end, matched, unmatched_bank, unmatched_book,
                           in_transit)
        report = ReconReport(
            bank_account, start, end, matched,
            [{"id": b.id, "fitid": b.fitid, "posted_on": b.posted_on.isoformat(),
              "amount_cents": b.amount_cents, "payee": b.payee, "memo": b.memo}
             for b in unmatched_bank],
            unmatched_book, summary, newly, in_transit)
        if dry_run:
            session.rollback()
            return report
        if newly:
            audit.record(session, actor=actor.label, action="bank.reconcile",
                         entity_type="bank_account", entity_id=bank_account[:60],
                         details={"start": start.isoformat(), "end": end.isoformat(),
                                  "newly_matched": newly, "unmatched_bank": len(unmatched_bank),
                                  "unmatched_book": len(unmatched_book)})
        session.flush()
    return report


def _best(items: Sequence[BookItem], posted: date, window: int) -> BookItem | None:
    """The closest book item dated on or up to ``window`` days before the bank date."""
    fits = [i for i in items if 0 <= (posted - i.on).days <= window]
    if not fits:
        return None
    return min(fits, key=lambda i: ((posted - i.on).days, TYPE_ORDER[i.type], i.id))


def _book_items(session: Session, start: date, end: date) -> list[BookItem]:
    items: list[BookItem] = []
    p = Payment.__table__.c  # type: ignore[attr-defined]
    for r in session.execute(select(p.id, p.received_on, p.amount_cents, p.location_id,
                                    p.method, p.reference).where(
            p.method != PaymentMethod.CARD.value, p.received_on >= start,
            p.received_on <= end)):
        items.append(BookItem("payment", r.id, r.received_on, r.amount_cents, r.location_id,
                              f"{r.method} payment" + (f" ({r.reference})" if r.reference
                                                       else "")))
    cash = session.execute(select(Account.id).where(Account.code == "1000")).scalar_one_or_none()
    if cash is not None:
        je, jl = JournalEntry.__table__.c, JournalLine.__table__.c  # type: ignore[attr-defined]
        for r in session.execute(
                select(je.id, je.entry_date, je.memo, je.source_type, jl.location_id,
                       func.sum(jl.amount_cents).label("cents"))
                .join(JournalLine.__table__, jl.entry_id == je.id)  # type: ignore[attr-defined]
                .where(jl.account_id == cash, je.source_type.in_(["payout", "bank_deposit"]),
                       je.entry_date >= start, je.entry_date <= end)
                .group_by(je.id, je.entry_date, je.memo, je.source_type, jl.location_id)):
            if r.cents:
                items.append(BookItem("payout" if r.source_type == "payout" else "deposit",
                                      r.id, r.entry_date, int(r.cents), r.location_id, r.memo))
    b = Bill.__table__.c  # type: ignore[attr-defined]
    for r in session.execute(select(b.id, b.paid_on, b.amount_cents, b.location_id, b.number)
                             .where(b.status == BillStatus.PAID.value,
                                    b.payment_method.is_distinct_from("card"),
                                    b.paid_on >= start, b.paid_on <= end)):
        items.append(BookItem("bill", r.id, r.paid_on, -r.amount_cents, r.location_id,
                              f"bill {r.number}"))
    e = Expense.__table__.c  # type: ignore[attr-defined]
    for r in session.execute(select(e.id, e.expense_date, e.amount_cents, e.location_id,
                                    e.vendor_name)
                             .where(e.status == ExpenseStatus.POSTED.value,
                                    e.expense_date >= start, e.expense_date <= end)):
        items.append(BookItem("expense", r.id, r.expense_date, -r.amount_cents, r.location_id,
                              f"expense {r.vendor_name}"))
    return items


def _batch_key(location_id: int, day: date) -> str:
    return f"payout:{location_id}:{day.isoformat()}"


def _card_batches(session: Session, start: date, end: date) -> list[BookItem]:
    """Card payments per location and local day, net of fees, not yet paid out by us."""
    p = Payment.__table__.c  # type: ignore[attr-defined]
    rows = session.execute(
        select(p.location_id, p.received_on, func.sum(p.amount_cents), func.sum(p.fee_cents),
               func.count())
        .where(p.method == PaymentMethod.CARD.value, p.received_on >= start,
               p.received_on <= end)
        .group_by(p.location_id, p.received_on)).all()
    keys = [_batch_key(loc, day) for loc, day, *_ in rows]
    done: set[str] = set()
    for part in chunks(keys, 1000):
        done |= set(session.execute(select(JournalEntry.idempotency_key).where(
            JournalEntry.idempotency_key.in_(list(part)))).scalars())  # type: ignore[union-attr]
    return [BookItem("card_batch", loc, day, int(gross) - int(fees), loc,
                     f"card payout of {n} charges on {day.isoformat()}", fee_cents=int(fees))
            for loc, day, gross, fees, n in rows if _batch_key(loc, day) not in done]


def _in_clearing(session: Session, batch: BookItem, on: date) -> bool:
    """The batch's gross is still in 1050 for its location (not paid out some other way)."""
    gross = batch.amount_cents + batch.fee_cents
    return ledger.balance(session, "1050", end=on, location_id=batch.location_id) >= gross


def _post_payout(session: Session, batch: BookItem, line: BankTransaction, actor: Actor,
                 names: dict[int, str]) -> int:
    gross = batch.amount_cents + batch.fee_cents
    legs = [Leg("1000", batch.amount_cents, batch.location_id),
            Leg("1050", -gross, batch.location_id)]
    if batch.fee_cents:
        legs.append(Leg("6600", batch.fee_cents, batch.location_id))
    entry = ledger.post_entry(session, EntryDraft(
        line.posted_on, f"Card payout {line.posted_on.isoformat()} — "
        f"{names.get(batch.location_id, batch.location_id)} ({batch.description})", legs,
        source_type="payout", source_id=line.id,
        idempotency_key=_batch_key(batch.location_id, batch.on)), actor=actor.label)
    assert entry.id is not None
    return entry.id


def _summary(account: str, start: date, end: date, matched: list[ReconMatch],
             unmatched_bank: list[BankTransaction], unmatched_book: list[BookItem],
             in_transit: int) -> str:
    """Slack mrkdwn: bold title, bullets, at most 10 items per list."""
    kinds: dict[str, int] = defaultdict(int)
    for m in matched:
        kinds[m.matched_type] += 1
    lines = [f"*Bank reconciliation — {account}* ({start.isoformat()} to {end.isoformat()})",
             f"• Matched: {len(matched)} lines, "
             f"{format_cents(sum(m.amount_cents for m in matched))}"
             + (" (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"
                if kinds else "")]
    lines.append(f"• Unmatched bank lines: {len(unmatched_bank)}, "
                 f"{format_cents(sum(b.amount_cents for b in unmatched_bank))}")
    for b in unmatched_bank[:10]:
        lines.append(f"    ◦ {b.posted_on.isoformat()}  {format_cents(b.amount_cents)}  "
                     f"{(b.payee or b.memo or '').strip()[:60]}")
    if len(unmatched_bank) > 10:
        lines.append(f"    ◦ …and {len(unmatched_bank) - 10} more")
    lines.append(f"• In the books, not on the statement: {len(unmatched_book)}, "
                 f"{format_cents(sum(b.amount_cents for b in unmatched_book))}")
    for item in unmatched_book[:10]:
        lines.append(f"    ◦ {item.on.isoformat()}  {format_cents(item.amount_cents)}  "
                     f"{item.description[:60]}")
    if len(unmatched_book) > 10:
        lines.append(f"    ◦ …and {len(unmatched_book) - 10} more")
    lines.append(f"• Card payments in transit (1050) at {end.isoformat()}: "
                 f"{format_cents(in_transit)}")
    if not unmatched_bank and not unmatched_book:
        lines.append(":white_check_mark: Everything on the statement is in the books.")
    return "\n".join(lines)


__all__ = [
    "BankLine", "BookItem", "CsvMapping", "ImportFileError", "ReconMatch", "ReconReport",
    "ReconcileError", "Statement", "import_bank", "parse_bank_csv", "parse_ofx", "reconcile",
]
