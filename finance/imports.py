"""CSV imports for a migration: members, plans, subscriptions and payments.

Every importer reads a whole file, validates every row (line number, column, reason) and only
then writes, in one transaction: a file with any rejected row writes nothing. Re-importing a
file adds nothing: each row has a natural key, and rows whose key already exists are counted as
``skipped_existing``.

Layouts (header names are matched case-insensitively; ``_``, ``-`` and spaces are the same):

members        code, name*, kind (company|person), email, phone, tax_id, company (code, email or
               external id of the parent company), home_location (code or name), external_id,
               joined_on. Key: external_id, else code, else email.
plans          name*, desk_type* (hot_desk|dedicated_desk|private_office|virtual_office or
               "Hot Desk"...), price*, location (blank = every location), code, interval
               (month|year), currency, deposit, included_meeting_minutes. Key: name + location.
subscriptions  member* (code, email or external id), plan* (code or name), start_date*,
               location, end_date (last day of service), quantity, unit_price (default: the
               plan's price), billing_anchor_day (default: the start day). Key: member + plan +
               start_date.
payments       external_id*, member*, date*, amount*, method* (card|cash|check|ach), fee,
               location, reference, invoice (an invoice number to pay). Key: external_id.

Processor exports (``import_payments(..., format=...)``):

stripe   Stripe Dashboard payments export. id -> external id ``stripe:<id>``; Created (UTC) ->
         the payment date in the location's time zone; Amount - Amount Refunded -> amount;
         Fee -> fee; Currency must be the location's; Customer Email, Customer ID (the member's
         external id) or Customer Description (code or exact name) -> member; Card Brand and
         Card Last4 -> reference; method card. Status Paid/Succeeded/Refunded/Partially
         refunded is money received; Failed, Canceled, Uncaptured, Pending, Blocked rows (and
         Captured = false, and fully refunded charges) are listed as ignored, not imported.
square   Square Dashboard transactions export. Payment ID (else Transaction ID) -> external id
         ``square:<id>``; Date + Time + Time Zone -> the payment date in the location's zone;
         Total Collected -> amount; Fees (negative in the export) -> fee; the tender columns
         Card / Cash / Other Tender (+ Other Tender Type) -> method; Customer Reference ID
         (member code or external id), Customer ID or Customer Name -> member; Location ->
         location; Card Brand + PAN Suffix -> reference. Event Type Refund rows and Square gift
         card tenders are ignored, not imported.

Payments are recorded exactly as finance.receivables.record_payment records them (debit the
method's clearing or cash account, credit receivables, allocate to the member's open invoices
oldest first, one ``payment:<id>`` entry and one ``payment.record`` audit row each). A file is
recorded in bulk through ledger.post_entries; ``batch=False`` calls record_payment row by row,
and a test holds the two paths to identical results.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlmodel import Session

from finance import audit
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.bulk import insert_rows, update_rows
from finance.models import (
    DeskType,
    Interval,
    Invoice,
    Location,
    Member,
    MemberKind,
    Payment,
    PaymentMethod,
    Plan,
    Subscription,
)
from finance.money import MoneyError, parse_amount
from finance.util import chunks

MAX_FILE_BYTES = 200 * 1024 * 1024
EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, not CSV, missing columns...)."""


@dataclass(frozen=True)
class RowError:
    """One rejected (or ignored) row: where, which column, and why."""

    line: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.column}" if self.column else "")
        return f"{where}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


@dataclass
class ImportReport:
    """What an import did. With any ``rejected`` row nothing was written."""

    file: str
    kind: str
    rows: int = 0
    imported: int = 0
    skipped_existing: int = 0
    rejected: list[RowError] = field(default_factory=list)
    ignored: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def reject(self, line: int, column: str | None, reason: str) -> None:
        self.rejected.append(RowError(line, column, reason))

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "kind": self.kind, "rows": self.rows, "imported": self.imported,
            "skipped_existing": self.skipped_existing, "ok": self.ok, "dry_run": self.dry_run,
            "rejected": [e.as_dict() for e in self.rejected],
            "ignored": [e.as_dict() for e in self.ignored],
            "warnings": list(self.warnings), **self.extra,
        }

    def text(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        if self.rejected:
            head = (f"{self.file}: {len(self.rejected)} of {self.rows} rows rejected; "
                    "nothing imported (fix the rows and import the file again)")
        else:
            head = (f"{self.file}: {self.rows} {self.kind} rows, {verb} {self.imported}, "
                    f"{self.skipped_existing} already present"
                    + (f", {len(self.ignored)} ignored" if self.ignored else ""))
        lines = [head]
        lines += [f"  rejected {e}" for e in self.rejected]
        lines += [f"  ignored  {e}" for e in self.ignored]
        lines += [f"  warning  {w}" for w in self.warnings]
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading CSV


def read_source(source: bytes | str | Path) -> tuple[bytes, str]:
    """The bytes of a file (or bytes as given) and a name for reports."""
    if isinstance(source, bytes):
        return source, "<data>"
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImportFileError(f"{path.name} is {size // 1_048_576} MB; the limit is "
                                  f"{MAX_FILE_BYTES // 1_048_576} MB")
        return path.read_bytes(), path.name
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252; refuse binary data."""
    if b"\x00" in data[:65536]:
        raise ImportFileError("this is a binary file, not CSV text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise ImportFileError("the file is neither UTF-8 nor Windows-1252 text") from None


def norm_header(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.replace("\ufeff", "").strip().lower())


@dataclass(frozen=True)
class Layout:
    """Accepted header names per field, and the fields a file must have."""

    name: str
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    one_of: tuple[tuple[str, ...], ...] = ()

    def documented_header(self) -> str:
        return ",".join(names[0] for names in self.columns.values())


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, field -> stripped cell)
    unknown_columns: list[str]


def sniff_delimiter(text: str) -> str:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_rows(text: str, report: ImportReport) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and data rows with their first line numbers; blank rows are dropped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    last_line = 0
    try:
        for cells in reader:
            line = last_line + 1
            last_line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.replace("\ufeff", "").strip() for c in cells]
                continue
            rows.append((line, cells))
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num}: not valid CSV ({exc})") from None
    if header is None:
        raise ImportFileError("the file is empty (no header row)")
    return header, rows


def read_table(data: bytes, layout: Layout, report: ImportReport) -> Table:
    """Decode, parse and map the columns of ``layout``; rows with stray cells are rejected."""
    header, raw_rows = read_rows(decode_text(data), report)
    index: dict[str, int] = {}
    wanted = {norm_header(alias): name for name, aliases in layout.columns.items()
              for alias in (name, *aliases)}
    unknown = []
    for i, col in enumerate(header):
        key = wanted.get(norm_header(col))
        if key is None:
            if col:
                unknown.append(col)
            continue
        if key in index:
            raise ImportFileError(f"column {col!r} appears twice in the header")
        index[key] = i
    missing = [f for f in layout.required if f not in index]
    for group in layout.one_of:
        if not any(f in index for f in group):
            missing.append(" or ".join(layout.columns[f][0] for f in group))
    if missing:
        raise ImportFileError(
            f"not a {layout.name} file: missing column(s) "
            f"{', '.join(layout.columns[m][0] if m in layout.columns else m for m in missing)}"
            f"; expected a header like: {layout.documented_header()}")
    rows = []
    width = len(header)
    for line, cells in raw_rows:
        extra = [c for c in cells[width:] if c.strip()]
        if extra:
            report.reject(line, None, f"the row has {len(cells)} cells but the header has "
                                      f"{width} columns")
            continue
        rows.append((line, {key: (cells[i].strip() if i < len(cells) else "")
                            for key, i in index.items()}))
    return Table(header, rows, unknown)


# --------------------------------------------------------------------------- cell parsers


class CellError(ValueError):
    """A bad cell; the message is the reason shown to the user."""


def cell_money(text: str, *, allow_negative: bool = False) -> int:
    try:
        cents = parse_amount(text)
    except MoneyError as exc:
        raise CellError(str(exc)) from None
    if cents < 0 and not allow_negative:
        raise CellError(f"must not be negative: {text!r}")
    return cents


def cell_date(text: str, formats: Iterable[str] = ("%Y-%m-%d",)) -> date:
    for fmt in formats:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    shown = " or ".join(f.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")
                        .replace("%y", "YY") for f in formats)
    raise CellError(f"not a date ({shown}): {text!r}")


def cell_int(text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise CellError(f"not a whole number: {text!r}") from None
    if value < low or (high is not None and value > high):
        raise CellError(f"must be between {low} and {high}" if high is not None
                        else f"must be at least {low}")
    return value


def _check_len(value: str, limit: int) -> str:
    if len(value) > limit:
        raise CellError(f"longer than {limit} characters")
    return value


class RowCheck:
    """Collects the errors of one row (each column is checked even after a bad one)."""

    def __init__(self, report: ImportReport, line: int, cells: dict[str, str],
                 labels: dict[str, str]) -> None:
        self.report, self.line, self.cells, self.labels = report, line, cells, labels
        self.bad = False

    def fail(self, column: str | None, reason: str) -> None:
        self.report.reject(self.line, self.labels.get(column or "", column), reason)
        self.bad = True

    def get(self, name: str, parse: Callable[[str], Any] | None = None, *,
            required: bool = False, default: Any = None) -> Any:
        text = self.cells.get(name, "")
        if not text:
            if required:
                self.fail(name, "required value is empty")
            return default
        if parse is None:
            return text
        try:
            return parse(text)
        except CellError as exc:
            self.fail(name, str(exc))
            return default


def _labels(layout: Layout) -> dict[str, str]:
    return {name: aliases[0] for name, aliases in layout.columns.items()}


# --------------------------------------------------------------------------- lookups


@dataclass
class _Locations:
    by_key: dict[str, Location]

    @classmethod
    def load(cls, session: Session) -> _Locations:
        by_key: dict[str, Location] = {}
        for loc in session.execute(select(Location)).scalars():
            by_key[loc.code.lower()] = loc
            by_key.setdefault(loc.name.lower(), loc)
        return cls(by_key)

    def find(self, text: str) -> Location:
        loc = self.by_key.get(text.strip().lower())
        if loc is None:
            raise CellError(f"no location {text!r}")
        return loc

    def only(self) -> Location | None:
        unique = {loc.id: loc for loc in self.by_key.values()}
        return next(iter(unique.values())) if len(unique) == 1 else None


@dataclass
class _MemberRef:
    id: int | None
    code: str
    kind: str
    name: str
    home_location_id: int | None


class _Members:
    """Members by code, external id and email (lower-case), plus those added in this file."""

    def __init__(self, session: Session) -> None:
        self.by_code: dict[str, _MemberRef] = {}
        self.by_ext: dict[str, _MemberRef] = {}
        self.by_email: dict[str, _MemberRef] = {}
        self.by_name: dict[str, list[_MemberRef]] = {}
        t = Member.__table__.c  # type: ignore[attr-defined]
        for row in session.execute(select(t.id, t.code, t.kind, t.name, t.email, t.external_ref,
                                          t.home_location_id)):
            self.add(_MemberRef(row.id, row.code, row.kind, row.name, row.home_location_id),
                     row.email, row.external_ref)

    def add(self, ref: _MemberRef, email: str | None, external: str | None) -> None:
        self.by_code[ref.code.lower()] = ref
        if external:
            self.by_ext[external.lower()] = ref
        if email:
            self.by_email.setdefault(email.lower(), ref)
        self.by_name.setdefault(ref.name.lower(), []).append(ref)

    def find(self, text: str, *, names: bool = False) -> _MemberRef:
        key = text.strip().lower()
        ref = self.by_code.get(key) or self.by_ext.get(key) or self.by_email.get(key)
        if ref is None and names:
            hits = self.by_name.get(key, [])
            if len(hits) > 1:
                raise CellError(f"{text!r} names {len(hits)} members; use the member code")
            ref = hits[0] if hits else None
        if ref is None:
            raise CellError(f"no member {text!r} (give a member code, email or external id)")
        return ref


def _start(services: Any, actor: Actor, session: Session, kind: str) -> None:
    require_role(session, actor, FINANCE_WRITERS, f"import {kind}")


def _finish(session: Session, actor: Actor, report: ImportReport, data: bytes) -> None:
    if report.imported and not report.dry_run:
        audit.record(session, actor=actor.label, action=f"import.{report.kind}",
                     entity_type="import", entity_id=report.file[:60],
                     details={"rows": report.rows, "imported": report.imported,
                              "skipped_existing": report.skipped_existing,
                              "ignored": len(report.ignored),
                              "sha256": hashlib.sha256(data).hexdigest()})


class _Rollback(Exception):
    """Raised inside the unit of work to undo it (rejected rows, dry runs)."""


def _run(services: Any, actor: Actor, source: bytes | str | Path, kind: str, *,
         file: str | None, dry_run: bool,
         body: Callable[[Session, bytes, ImportReport], None]) -> ImportReport:
    data, name = read_source(source)
    report = ImportReport(file=file or name, kind=kind, dry_run=dry_run)
    try:
        with services.session() as session:
            _start(services, actor, session, kind)
            body(session, data, report)
            if report.rejected:
                report.imported = 0
                raise _Rollback
            _finish(session, actor, report, data)
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    return report


# --------------------------------------------------------------------------- members

MEMBERS = Layout("members", {
    "code": ("code", "member code", "member_code"),
    "name": ("name", "member name", "full name", "company name"),
    "kind": ("kind", "type"),
    "email": ("email", "email address"),
    "phone": ("phone", "phone number"),
    "tax_id": ("tax_id", "tin", "ein", "vat"),
    "company": ("company", "company code", "parent"),
    "home_location": ("home_location", "location"),
    "external_id": ("external_id", "external ref", "id"),
    "joined_on": ("joined_on", "joined", "start date", "created"),
}, required=("name",))


def import_members(services: Any, actor: Actor, source: bytes | str | Path, *,
                   file: str | None = None, dry_run: bool = False) -> ImportReport:
    """Import members (companies and people); see the module docstring for the layout."""
    return _run(services, actor, source, "members", file=file, dry_run=dry_run,
                body=_members_body)


def _derived_code(prefix: str, key: str) -> str:
    return f"{prefix}-{hashlib.sha1(key.lower().encode()).hexdigest()[:10].upper()}"


def _members_body(session: Session, data: bytes, report: ImportReport) -> None:
    table = read_table(data, MEMBERS, report)
    report.rows = len(table.rows) + len(report.rejected)
    if table.unknown_columns:
        report.warnings.append(f"columns not imported: {', '.join(table.unknown_columns)}")
    labels = _labels(MEMBERS)
    locs = _Locations.load(session)
    members = _Members(session)
    seen: dict[tuple[str, str], int] = {}
    new_rows: list[dict[str, Any]] = []
    parents: list[tuple[int, str]] = []  # (index in new_rows, parent code) for in-file parents
    for line, cells in table.rows:
        row = RowCheck(report, line, cells, labels)
        name = row.get("name", lambda t: _check_len(t, 200), required=True)
        kind_text = row.get("kind", default="")
        kind = None
        if kind_text:
            try:
                kind = MemberKind(kind_text.lower()).value
            except ValueError:
                row.fail("kind", f"must be company or person, got {kind_text!r}")
        email = row.get("email", _email)
        code = row.get("code", _code)
        external = row.get("external_id", lambda t: _check_len(t, 80))
        phone = row.get("phone", lambda t: _check_len(t, 40))
        tax_id = row.get("tax_id", lambda t: _check_len(t, 40))
        joined = row.get("joined_on", cell_date)
        home = row.get("home_location", locs.find)
        parent: _MemberRef | None = None
        if cells.get("company"):
            try:
                parent = members.find(cells["company"])
                if parent.kind != MemberKind.COMPANY:
                    row.fail("company", f"{cells['company']!r} is a person, not a company")
            except CellError as exc:
                row.fail("company", str(exc))
        # natural key: external id, else code, else email
        existing = None
        for col, value, index in (("external_id", external, members.by_ext),
                                  ("code", code, members.by_code),
                                  ("email", email, members.by_email)):
            if not value:
                continue
            first = seen.get((col, value.lower()))
            if first is not None:
                row.fail(col, f"{value!r} repeats line {first}")
                continue
            seen[(col, value.lower())] = line
            hit = index.get(value.lower())
            if hit is not None and existing is None:
                existing = hit
        if row.bad:
            continue
        if existing is not None:
            if code and existing.code.lower() != code.lower() and code.lower() in members.by_code:
                row.fail("code", f"{code!r} is another member than the one with this "
                                 f"{'external id' if external else 'email'} ({existing.code})")
                continue
            if existing.id is not None:
                report.skipped_existing += 1
                continue
        if not code:
            key = external or email or name
            code = _derived_code("M", key)
            if code.lower() in members.by_code:
                row.fail("code", f"no code given and the derived code {code} is taken; "
                                 "give a code")
                continue
        ref = _MemberRef(None, code, kind or MemberKind.PERSON.value, name,
                         home.id if home else None)
        members.add(ref, email, external)
        if parent is not None and parent.id is None:
            parents.append((len(new_rows), parent.code))
        new_rows.append({"code": code, "kind": ref.kind, "name": name, "email": email,
                         "phone": phone, "tax_id": tax_id,
                         "company_id": parent.id if parent is not None else None,
                         "home_location_id": ref.home_location_id, "external_ref": external,
                         "joined_on": joined})
    if report.rejected or not new_rows:
        return
    ids = insert_rows(session, Member, new_rows)
    id_of = {row["code"].lower(): id_ for row, id_ in zip(new_rows, ids, strict=True)}
    update_rows(session, Member, [{"b_id": ids[i], "company_id": id_of[code.lower()]}
                                 for i, code in parents])
    report.imported = len(new_rows)


def _email(text: str) -> str:
    text = text.strip().lower()
    if not EMAIL_RE.match(text) or len(text) > 200:
        raise CellError(f"not an email address: {text!r}")
    return text


def _code(text: str) -> str:
    if not CODE_RE.match(text) or len(text) > 40:
        raise CellError(f"codes are up to 40 letters, digits and . _ / -, got {text!r}")
    return text


# --------------------------------------------------------------------------- plans

PLANS = Layout("plans", {
    "name": ("name", "plan", "plan name"),
    "desk_type": ("desk_type", "desk type", "type"),
    "price": ("price", "amount", "monthly price"),
    "location": ("location", "location code"),
    "code": ("code", "plan code"),
    "interval": ("interval", "billing interval", "period"),
    "currency": ("currency",),
    "deposit": ("deposit", "security deposit"),
    "included_meeting_minutes": ("included_meeting_minutes", "meeting minutes"),
}, required=("name", "desk_type", "price"))

INTERVALS = {"month": Interval.MONTH, "monthly": Interval.MONTH, "year": Interval.YEAR,
             "yearly": Interval.YEAR, "annual": Interval.YEAR, "annually": Interval.YEAR}


def import_plans(services: Any, actor: Actor, source: bytes | str | Path, *,
                 file: str | None = None, dry_run: bool = False) -> ImportReport:
    """Import plans (one per name and location); see the module docstring for the layout."""
    return _run(services, actor, source, "plans", file=file, dry_run=dry_run, body=_plans_body)


def _desk_type(text: str) -> str:
    value = norm_header(text).replace(" ", "_")
    try:
        return DeskType(value).value
    except ValueError:
        raise CellError("must be one of " + ", ".join(d.value for d in DeskType)
                        + f", got {text!r}") from None


def _plans_body(session: Session, data: bytes, report: ImportReport) -> None:
    table = read_table(data, PLANS, report)
    report.rows = len(table.rows) + len(report.rejected)
    labels = _labels(PLANS)
    locs = _Locations.load(session)
    plans = list(session.execute(select(Plan)).scalars())
    by_key = {(p.name.lower(), p.location_id): p for p in plans}
    codes = {p.code.lower(): p for p in plans}
    seen: dict[tuple[str, int | None], int] = {}
    new: list[Plan] = []
    for line, cells in table.rows:
        row = RowCheck(report, line, cells, labels)
        name = row.get("name", lambda t: _check_len(t, 120), required=True)
        desk = row.get("desk_type", _desk_type, required=True)
        price = row.get("price", cell_money, required=True)
        loc = row.get("location", locs.find)
        code = row.get("code", _code)
        interval_text = row.get("interval", default="month")
        interval = INTERVALS.get(interval_text.lower())
        if interval is None:
            row.fail("interval", f"must be month or year, got {interval_text!r}")
        default_currency = loc.currency if loc else "USD"
        currency = row.get("currency", default=default_currency).upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            row.fail("currency", f"not a currency code: {currency!r}")
        elif loc is not None and currency != loc.currency:
            row.fail("currency", f"{loc.code} bills in {loc.currency}, not {currency}")
        deposit = row.get("deposit", cell_money, default=0)
        minutes = row.get("included_meeting_minutes", lambda t: cell_int(t, 0), default=0)
        if row.bad:
            continue
        key = (name.lower(), loc.id if loc else None)
        if key in seen:
            row.fail("name", f"plan {name!r} at {loc.code if loc else 'every location'} "
                             f"repeats line {seen[key]}")
            continue
        seen[key] = line
        if key in by_key:
            report.skipped_existing += 1
            continue
        if not code:
            code = re.sub(r"[^A-Z0-9]+", "-", f"{name} {loc.code if loc else ''}".upper())
            code = code.strip("-")[:40]
        if code.lower() in codes:
            row.fail("code", f"plan code {code!r} is already used by "
                             f"{codes[code.lower()].name!r}")
            continue
        assert interval is not None
        plan = Plan(code=code, name=name, desk_type=desk, location_id=loc.id if loc else None,
                    price_cents=price, interval=interval.value, currency=currency,
                    deposit_cents=deposit, included_meeting_minutes=minutes)
        codes[code.lower()] = plan
        new.append(plan)
    if report.rejected or not new:
        return
    session.add_all(new)
    session.flush()
    report.imported = len(new)


# --------------------------------------------------------------------------- subscriptions

SUBSCRIPTIONS = Layout("subscriptions", {
    "member": ("member", "member code", "email"),
    "plan": ("plan", "plan code", "plan name"),
    "start_date": ("start_date", "start", "starts on"),
    "location": ("location", "location code"),
    "end_date": ("end_date", "end", "ends on"),
    "quantity": ("quantity", "qty", "seats"),
    "unit_price": ("unit_price", "price"),
    "billing_anchor_day": ("billing_anchor_day", "anchor day", "billing day"),
}, required=("member", "plan", "start_date"))


def import_subscriptions(services: Any, actor: Actor, source: bytes | str | Path, *,
                         file: str | None = None, dry_run: bool = False) -> ImportReport:
    """Import subscriptions (member on a plan from a start date); see the module docstring."""
    return _run(services, actor, source, "subscriptions", file=file, dry_run=dry_run,
                body=_subscriptions_body)


def _subscriptions_body(session: Session, data: bytes, report: ImportReport) -> None:
    table = read_table(data, SUBSCRIPTIONS, report)
    report.rows = len(table.rows) + len(report.rejected)
    labels = _labels(SUBSCRIPTIONS)
    locs = _Locations.load(session)
    members = _Members(session)
    plans = list(session.execute(select(Plan)).scalars())
    plan_codes = {p.code.lower(): p for p in plans}
    plan_names: dict[str, list[Plan]] = {}
    for p in plans:
        plan_names.setdefault(p.name.lower(), []).append(p)
    s = Subscription.__table__.c  # type: ignore[attr-defined]
    existing = {(r.member_id, r.plan_id, r.start_date) for r in session.execute(
        select(s.member_id, s.plan_id, s.start_date))}
    seen: dict[tuple[int, int, date], int] = {}
    new_rows: list[dict[str, Any]] = []
    for line, cells in table.rows:
        row = RowCheck(report, line, cells, labels)
        member = row.get("member", members.find, required=True)
        loc = row.get("location", locs.find)
        start = row.get("start_date", cell_date, required=True)
        end = row.get("end_date", cell_date)
        quantity = row.get("quantity", lambda t: cell_int(t, 1), default=1)
        price = row.get("unit_price", cell_money)
        anchor = row.get("billing_anchor_day", lambda t: cell_int(t, 1, 31))
        plan: Plan | None = None
        plan_text = cells.get("plan", "")
        if not plan_text:
            row.fail("plan", "required value is empty")
        else:
            plan = plan_codes.get(plan_text.lower())
            if plan is None:
                hits = plan_names.get(plan_text.lower(), [])
                want = loc.id if loc else (member.home_location_id if member else None)
                local = [p for p in hits if p.location_id == want]
                hits = local or [p for p in hits if p.location_id is None] or hits
                if len(hits) == 1:
                    plan = hits[0]
                elif hits:
                    row.fail("plan", f"{plan_text!r} names {len(hits)} plans; use the plan code "
                                     "or give the location")
                else:
                    row.fail("plan", f"no plan {plan_text!r}")
        if plan is not None and loc is None:
            location_id = plan.location_id or (member.home_location_id if member else None)
            if location_id is None:
                only = locs.only()
                location_id = only.id if only else None
            if location_id is None:
                row.fail("location", "required: the plan is shared and the member has no home "
                                     "location")
        else:
            location_id = loc.id if loc else None
        if plan is not None and loc is not None and plan.location_id not in (None, loc.id):
            row.fail("location", f"plan {plan.code} belongs to another location")
        if start and end and end < start:
            row.fail("end_date", f"ends ({end}) before it starts ({start})")
        if row.bad or member is None or plan is None or start is None:
            continue
        if member.id is None:  # pragma: no cover - members come from the store here
            row.fail("member", "unknown member")
            continue
        key = (member.id, plan.id, start)
        if key in seen:
            row.fail("start_date", f"{member.code} on {plan.code} from {start} repeats line "
                                   f"{seen[key]}")
            continue
        seen[key] = line  # type: ignore[index]
        if key in existing:
            report.skipped_existing += 1
            continue
        new_rows.append({"member_id": member.id, "plan_id": plan.id, "location_id": location_id,
                         "quantity": quantity,
                         "unit_price_cents": plan.price_cents if price is None else price,
                         "start_date": start, "end_date": end,
                         "billing_anchor_day": anchor or start.day})
    if report.rejected or not new_rows:
        return
    insert_rows(session, Subscription, new_rows)
    report.imported = len(new_rows)


# --------------------------------------------------------------------------- payments

PAYMENTS = Layout("payments", {
    "external_id": ("external_id", "payment id", "id"),
    "member": ("member", "member code", "email"),
    "date": ("date", "received_on", "received on", "paid on"),
    "amount": ("amount",),
    "method": ("method", "payment method"),
    "fee": ("fee", "processing fee"),
    "location": ("location", "location code"),
    "reference": ("reference", "memo", "check number"),
    "invoice": ("invoice", "invoice number"),
}, required=("external_id", "member", "date", "amount", "method"))

STRIPE = Layout("Stripe payments export", {
    "id": ("id",),
    "created": ("Created (UTC)", "Created date (UTC)"),
    "amount": ("Amount",),
    "amount_refunded": ("Amount Refunded",),
    "currency": ("Currency",),
    "status": ("Status",),
    "captured": ("Captured",),
    "fee": ("Fee",),
    "customer_id": ("Customer ID",),
    "customer_email": ("Customer Email",),
    "customer_description": ("Customer Description",),
    "description": ("Description",),
    "card_brand": ("Card Brand",),
    "card_last4": ("Card Last4",),
    "invoice_number": ("Invoice Number",),
}, required=("id", "created", "amount", "currency", "status"),
    one_of=(("customer_email", "customer_id", "customer_description"),))

SQUARE = Layout("Square transactions export", {
    "date": ("Date",),
    "time": ("Time",),
    "time_zone": ("Time Zone",),
    "gross_sales": ("Gross Sales",),
    "total_collected": ("Total Collected",),
    "card": ("Card",),
    "cash": ("Cash",),
    "gift_card": ("Square Gift Card",),
    "other_tender": ("Other Tender",),
    "other_tender_type": ("Other Tender Type",),
    "fees": ("Fees",),
    "net_total": ("Net Total",),
    "transaction_id": ("Transaction ID",),
    "payment_id": ("Payment ID",),
    "card_brand": ("Card Brand",),
    "pan_suffix": ("PAN Suffix",),
    "description": ("Description",),
    "event_type": ("Event Type",),
    "location": ("Location",),
    "customer_id": ("Customer ID",),
    "customer_name": ("Customer Name",),
    "customer_reference_id": ("Customer Reference ID",),
}, required=("date", "total_collected"),
    one_of=(("payment_id", "transaction_id"),
            ("customer_reference_id", "customer_id", "customer_name")))

STRIPE_RECEIVED = {"paid", "succeeded", "refunded", "partially refunded"}
STRIPE_NOT_RECEIVED = {"failed", "canceled", "cancelled", "uncaptured", "pending", "blocked",
                       "requires payment method", "incomplete"}
SQUARE_ZONES = {
    "pacific time (us & canada)": "America/Los_Angeles",
    "mountain time (us & canada)": "America/Denver",
    "central time (us & canada)": "America/Chicago",
    "eastern time (us & canada)": "America/New_York",
    "arizona": "America/Phoenix",
    "alaska": "America/Juneau",
    "hawaii": "Pacific/Honolulu",
    "atlantic time (canada)": "America/Halifax",
    "london": "Europe/London",
    "utc": "UTC",
}
FORMATS = ("generic", "stripe", "square")


@dataclass
class _PaymentRow:
    line: int
    external_id: str
    member: _MemberRef
    location_id: int
    amount_cents: int
    fee_cents: int
    method: str
    received_on: date
    reference: str | None
    invoice_id: int | None


def import_payments(services: Any, actor: Actor, source: bytes | str | Path, *,
                    format: str = "generic", location: str | None = None,
                    file: str | None = None, dry_run: bool = False,
                    batch: bool = True) -> ImportReport:
    """Import payments (generic layout, or a Stripe or Square export).

    Each payment is recorded exactly as finance.receivables.record_payment records it (same
    payment row, allocations to the member's open invoices oldest first, the same balanced
    entry ``payment:<id>`` and a ``payment.record`` audit row). ``batch=True`` (the default)
    does it for the whole file with bulk statements; ``batch=False`` calls record_payment row
    by row (the reference; about 20x slower).

    ``location`` (code or name) is used for rows that name none and whose member has no home
    location.
    """
    if format not in FORMATS:
        raise ImportFileError(f"unknown payments format {format!r}; use {', '.join(FORMATS)}")

    def body(session: Session, data: bytes, report: ImportReport) -> None:
        _payments_body(session, data, report, format, location, actor, batch)

    return _run(services, actor, source, "payments", file=file, dry_run=dry_run, body=body)


class _PaymentContext:
    def __init__(self, session: Session, report: ImportReport, location: str | None) -> None:
        self.session, self.report = session, report
        self.locs = _Locations.load(session)
        self.members = _Members(session)
        self.default_loc: Location | None = None
        if location:
            try:
                self.default_loc = self.locs.find(location)
            except CellError as exc:
                raise ImportFileError(f"--location: {exc}") from None
        self.invoices: dict[str, tuple[int, int, int]] = {}
        self.seen: dict[str, int] = {}

    def location_for(self, row: RowCheck, column: str,
                     member: _MemberRef | None) -> Location | None:
        loc = row.get(column, self.locs.find)
        if loc is not None or row.cells.get(column):
            return loc
        if self.default_loc is not None:
            return self.default_loc
        if member is not None and member.home_location_id is not None:
            return next(lc for lc in self.locs.by_key.values() if lc.id == member.home_location_id)
        only = self.locs.only()
        if only is None:
            row.fail(column, "no location given, the member has no home location and there is "
                             "more than one location (use --location)")
        return only

    def invoice(self, number: str) -> tuple[int, int, int]:
        """(invoice id, member id, location id) of an issued invoice."""
        if not self.invoices:
            t = Invoice.__table__.c  # type: ignore[attr-defined]
            self.invoices = {r.number: (r.id, r.member_id, r.location_id)
                             for r in self.session.execute(
                                 select(t.number, t.id, t.member_id, t.location_id)
                                 .where(t.number.is_not(None)))}
        found = self.invoices.get(number)
        if found is None:
            raise CellError(f"no issued invoice {number!r}")
        return found


def _payments_body(session: Session, data: bytes, report: ImportReport, format: str,
                   location: str | None, actor: Actor, batch: bool = True) -> None:
    layout = {"generic": PAYMENTS, "stripe": STRIPE, "square": SQUARE}[format]
    table = read_table(data, layout, report)
    report.rows = len(table.rows) + len(report.rejected)
    report.extra["format"] = format
    ctx = _PaymentContext(session, report, location)
    labels = _labels(layout)
    parse_row = {"generic": _generic_payment, "stripe": _stripe_payment,
                 "square": _square_payment}[format]
    planned: list[_PaymentRow] = []
    for line, cells in table.rows:
        row = RowCheck(report, line, cells, labels)
        payment = parse_row(ctx, row)
        if payment is None or row.bad:
            continue
        first = ctx.seen.get(payment.external_id)
        if first is not None:
            row.fail("external_id" if format == "generic" else
                     ("id" if format == "stripe" else "payment_id"),
                     f"payment {payment.external_id} repeats line {first}")
            continue
        ctx.seen[payment.external_id] = line
        planned.append(payment)
    if report.rejected:
        return
    existing: set[str] = set()
    ids = [p.external_id for p in planned]
    for part in chunks(ids, 1000):
        existing |= set(session.execute(select(Payment.external_id).where(
            Payment.external_id.in_(list(part)))).scalars())  # type: ignore[union-attr]
    todo = [p for p in planned if p.external_id not in existing]
    report.skipped_existing = len(planned) - len(todo)
    from finance import ledger

    months = sorted({p.received_on.replace(day=1) for p in todo})
    locked = {f"{m:%Y-%m}" for m in months if ledger.is_locked(session, m)}
    for p in todo:
        if p.received_on.strftime("%Y-%m") in locked:
            report.reject(p.line, None, f"period {p.received_on:%Y-%m} is locked; nothing can "
                                        "post into it")
    if report.rejected:
        return
    if report.dry_run:
        report.imported = len(todo)
    elif batch:
        _record_payments(session, todo, actor)
        report.imported = len(todo)
    else:
        _record_payments_one_by_one(session, todo, actor, report)


def _record_payments_one_by_one(session: Session, todo: list[_PaymentRow], actor: Actor,
                                report: ImportReport) -> None:
    """The reference path: finance.receivables.record_payment for each row."""
    from finance.billing import BillingError
    from finance.ledger import LedgerError
    from finance.receivables import record_payment

    for p in todo:
        try:
            payment = record_payment(
                session, member_id=p.member.id, location_id=p.location_id,  # type: ignore[arg-type]
                amount_cents=p.amount_cents, method=p.method, received_on=p.received_on,
                actor=actor, reference=p.reference, external_id=p.external_id,
                invoice_ids=[p.invoice_id] if p.invoice_id is not None else None)
        except (BillingError, LedgerError) as exc:
            report.reject(p.line, None, str(exc))
            report.imported = 0
            return
        if p.fee_cents:
            payment.fee_cents = p.fee_cents
        report.imported += 1
        if report.imported % 200 == 0:
            # everything so far is flushed into this transaction; a small identity map keeps
            # each later flush cheap (a 100k-payment migration is one transaction)
            session.flush()
            session.expunge_all()
    session.flush()


def _generic_payment(ctx: _PaymentContext, row: RowCheck) -> _PaymentRow | None:
    external = row.get("external_id", lambda t: _check_len(t, 120), required=True)
    member = row.get("member", ctx.members.find, required=True)
    received = row.get("date", cell_date, required=True)
    amount = row.get("amount", cell_money, required=True)
    fee = row.get("fee", cell_money, default=0)
    method_text = row.get("method", required=True) or ""
    method = None
    if method_text:
        try:
            method = PaymentMethod(method_text.lower()).value
        except ValueError:
            row.fail("method", f"must be card, cash, check or ach, got {method_text!r}")
    reference = row.get("reference", lambda t: _check_len(t, 120))
    invoice_id = invoice_loc = None
    if row.cells.get("invoice"):
        try:
            invoice_id, owner, invoice_loc = ctx.invoice(row.cells["invoice"])
            if member is not None and owner != member.id:
                row.fail("invoice", f"invoice {row.cells['invoice']} belongs to another member")
        except CellError as exc:
            row.fail("invoice", str(exc))
    if invoice_loc is not None and not row.cells.get("location"):
        loc = next(lc for lc in ctx.locs.by_key.values() if lc.id == invoice_loc)
    else:
        loc = ctx.location_for(row, "location", member)
    if amount == 0:
        row.fail("amount", "a payment must be more than zero")
    if row.bad or member is None or loc is None:
        return None
    return _PaymentRow(row.line, external, member, loc.id,  # type: ignore[arg-type]
                       amount, fee, method,  # type: ignore[arg-type]
                       received, reference, invoice_id)


def _member_from(ctx: _PaymentContext, row: RowCheck,
                 columns: tuple[tuple[str, bool], ...]) -> _MemberRef | None:
    """The first column (in order) that is filled decides the member."""
    for column, names in columns:
        text = row.cells.get(column, "")
        if text:
            try:
                return ctx.members.find(text, names=names)
            except CellError as exc:
                row.fail(column, str(exc))
                return None
    row.fail(columns[0][0], "no customer on this row: cannot tell which member paid")
    return None


def _stripe_payment(ctx: _PaymentContext, row: RowCheck) -> _PaymentRow | None:
    status = row.get("status", required=True) or ""
    if status.lower() in STRIPE_NOT_RECEIVED or row.cells.get("captured", "").lower() == "false":
        ctx.report.ignored.append(RowError(row.line, "Status", f"status {status}: no money "
                                                               "received"))
        return None
    if status and status.lower() not in STRIPE_RECEIVED:
        row.fail("status", f"unknown Stripe status {status!r}")
    charge = row.get("id", lambda t: _check_len(t, 110), required=True)
    created = row.get("created", _utc_timestamp, required=True)
    amount = row.get("amount", cell_money, required=True)
    refunded = row.get("amount_refunded", cell_money, default=0)
    fee = row.get("fee", cell_money, default=0)
    currency = (row.get("currency", required=True) or "").upper()
    member = _member_from(ctx, row, (("customer_email", False), ("customer_id", False),
                                     ("customer_description", True)))
    loc = ctx.location_for(row, "location", member)
    if row.bad or member is None or loc is None or amount is None:
        return None
    if currency != loc.currency:
        row.fail("currency", f"{loc.code} books in {loc.currency}, this charge is {currency}")
        return None
    net = amount - (refunded or 0)
    if net < 0:
        row.fail("amount_refunded", "refunded more than the amount")
        return None
    if net == 0:
        ctx.report.ignored.append(RowError(row.line, "Amount Refunded", "fully refunded"))
        return None
    received = created.astimezone(ZoneInfo(loc.timezone)).date()
    brand, last4 = row.cells.get("card_brand", ""), row.cells.get("card_last4", "")
    reference = (f"{brand} ····{last4}".strip() if last4 else
                 row.cells.get("description") or None)
    return _PaymentRow(row.line, f"stripe:{charge}", member,
                       loc.id, net, fee,  # type: ignore[arg-type]
                       PaymentMethod.CARD.value, received,
                       reference[:120] if reference else None, None)


def _utc_timestamp(text: str) -> datetime:
    value = text.strip().replace("T", " ").removesuffix("Z").removesuffix(" UTC")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CellError(f"not a UTC timestamp (YYYY-MM-DD HH:MM[:SS]): {text!r}")


def _square_payment(ctx: _PaymentContext, row: RowCheck) -> _PaymentRow | None:
    event = row.cells.get("event_type", "")
    if event and event.lower() != "payment":
        ctx.report.ignored.append(RowError(row.line, "Event Type", f"{event}: not a payment"))
        return None
    day = row.get("date", lambda t: cell_date(t, ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y")),
                  required=True)
    total = row.get("total_collected", lambda t: cell_money(t, allow_negative=True),
                    required=True)
    fees = row.get("fees", lambda t: cell_money(t, allow_negative=True), default=0)
    tenders = {name: row.get(name, lambda t: cell_money(t, allow_negative=True), default=0)
               for name in ("card", "cash", "other_tender", "gift_card")}
    pay_id = row.cells.get("payment_id") or row.cells.get("transaction_id") or ""
    if not pay_id:
        row.fail("payment_id", "required value is empty")
    member = _member_from(ctx, row, (("customer_reference_id", False), ("customer_id", False),
                                     ("customer_name", True)))
    loc = ctx.location_for(row, "location", member)
    if row.bad or day is None or total is None or loc is None or member is None:
        return None
    if total <= 0:
        ctx.report.ignored.append(RowError(row.line, "Total Collected",
                                           "nothing collected (refund or zero sale)"))
        return None
    paid = {k: v for k, v in tenders.items() if v}
    if set(paid) == {"gift_card"}:
        ctx.report.ignored.append(RowError(row.line, "Square Gift Card",
                                           "paid by gift card: no new money"))
        return None
    main = max(paid, key=lambda k: paid[k]) if paid else "card"
    method = {"card": "card", "cash": "cash", "gift_card": "card"}.get(main)
    if main == "other_tender":
        kind = row.cells.get("other_tender_type", "").lower()
        method = "check" if "check" in kind or "cheque" in kind else (
            "ach" if any(w in kind for w in ("transfer", "ach", "bank")) else None)
        if method is None:
            row.fail("other_tender_type", f"tender type {kind or '(blank)'!r} is not card, cash, "
                                          "check or bank transfer")
            return None
    received = day
    zone_text = row.cells.get("time_zone", "")
    time_text = row.cells.get("time", "")
    if zone_text and time_text:
        zone = _square_zone(zone_text)
        if zone is None:
            ctx.report.warnings.append(f"line {row.line}: unknown time zone {zone_text!r}; "
                                       "used the Date as the location's date")
        elif zone != loc.timezone:
            try:
                moment = datetime.combine(day, datetime.strptime(time_text, "%H:%M:%S").time(),
                                          tzinfo=ZoneInfo(zone))
                received = moment.astimezone(ZoneInfo(loc.timezone)).date()
            except ValueError:
                row.fail("time", f"not a time (HH:MM:SS): {time_text!r}")
                return None
    brand, suffix = row.cells.get("card_brand", ""), row.cells.get("pan_suffix", "")
    reference = (f"{brand} ····{suffix}".strip() if suffix else
                 row.cells.get("description") or None)
    return _PaymentRow(row.line, f"square:{pay_id}"[:120], member,
                       loc.id, total,  # type: ignore[arg-type]
                       abs(fees or 0), method, received,  # type: ignore[arg-type]
                       reference[:120] if reference else None, None)


def _square_zone(text: str) -> str | None:
    name = SQUARE_ZONES.get(text.strip().lower(), text.strip())
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


IMPORTERS: dict[str, Callable[..., ImportReport]] = {
    "members": import_members,
    "plans": import_plans,
    "subscriptions": import_subscriptions,
    "payments": import_payments,
}


def _record_payments(session: Session, todo: list[_PaymentRow], actor: Actor) -> None:
    """record_payment for many payments at once: the same rows, allocations and entries."""
    from finance.ledger import EntryDraft, Leg, post_entries
    from finance.models import AuditLog, PaymentAllocation
    from finance.receivables import CLEARING_ACCOUNT

    ids = insert_rows(session, Payment, [
        {"member_id": p.member.id, "location_id": p.location_id, "method": p.method,
         "amount_cents": p.amount_cents, "fee_cents": p.fee_cents, "received_on": p.received_on,
         "reference": p.reference, "external_id": p.external_id} for p in todo])
    # open invoices per member, in record_payment's order (due date, id), locked for update
    inv_t = Invoice.__table__  # type: ignore[attr-defined]
    open_by_member: dict[int, list[list[int]]] = {}
    member_ids = sorted({p.member.id for p in todo})  # type: ignore[type-var]
    for part in chunks(member_ids, 1000):
        stmt = (select(inv_t.c.id, inv_t.c.member_id, inv_t.c.total_cents,
                       inv_t.c.credit_applied_cents, inv_t.c.amount_paid_cents)
                .where(inv_t.c.member_id.in_(list(part)), inv_t.c.status == "open")
                .order_by(inv_t.c.due_date, inv_t.c.id).with_for_update())
        for r in session.execute(stmt):
            open_by_member.setdefault(r.member_id, []).append(
                [r.id, r.total_cents - r.credit_applied_cents - r.amount_paid_cents, 0])
    allocations: list[dict[str, Any]] = []
    drafts: list[EntryDraft] = []
    audits: list[dict[str, Any]] = []
    for p, pid in zip(todo, ids, strict=True):
        left = p.amount_cents
        for inv in open_by_member.get(p.member.id, []):  # type: ignore[arg-type]
            if left <= 0:
                break
            if p.invoice_id is not None and inv[0] != p.invoice_id:
                continue
            take = min(left, inv[1])
            if take <= 0:
                continue
            allocations.append({"payment_id": pid, "invoice_id": inv[0], "amount_cents": take})
            inv[1] -= take
            inv[2] += take
            left -= take
        memo = f"Payment by {p.method}" + (f" ({p.reference})" if p.reference else "")
        drafts.append(EntryDraft(
            p.received_on, memo,
            [Leg(CLEARING_ACCOUNT[PaymentMethod(p.method)], p.amount_cents, p.location_id,
                 member_id=p.member.id),
             Leg("1100", -p.amount_cents, p.location_id, member_id=p.member.id)],
            source_type="payment", source_id=pid, idempotency_key=f"payment:{pid}"))
        audits.append({"actor": actor.label[:60], "action": "payment.record",
                       "entity_type": "payment", "entity_id": str(pid),
                       "details": {"amount_cents": p.amount_cents, "unapplied_cents": left}})
    entries = post_entries(session, drafts, actor=actor.label, audit_each=False)
    update_rows(session, Payment, [{"b_id": pid, "journal_entry_id": entry}
                                   for pid, entry in zip(ids, entries, strict=True)])
    for part in chunks(allocations, 5000):
        session.execute(PaymentAllocation.__table__.insert(), list(part))  # type: ignore[attr-defined]
    paid = [(inv[0], inv[1], inv[2]) for invs in open_by_member.values() for inv in invs
            if inv[2]]
    if paid:
        amounts = {}
        for part in chunks([i for i, _, _ in paid], 1000):
            amounts.update(dict(session.execute(select(inv_t.c.id, inv_t.c.amount_paid_cents)
                                                .where(inv_t.c.id.in_(list(part)))).all()))
        update_rows(session, Invoice, [
            {"b_id": i, "amount_paid_cents": amounts[i] + added,
             "status": "paid" if due <= 0 else "open"} for i, due, added in paid])
    for part in chunks(audits, 5000):
        session.execute(AuditLog.__table__.insert(), list(part))  # type: ignore[attr-defined]
