"""The anomaly detectors of DESIGN §5, one function per kind.

Each detector reads the store with a few set-based queries (no query per record), applies the
thresholds of :class:`~finance.anomalies.rules.AnomalyRules` and returns :class:`Finding`\\ s
with a severity, a plain-language reason and the ids of the records involved. Detectors never
write. A finding's ``fingerprint`` depends only on what the problem is (its kind and its
subject records), so the same problem found by the next scan is recognized and not raised again.

Severity (see ``severity`` in the rules file): by the amount at stake (high from $5,000, medium
from $1,000, else low), raised to a kind's floor (a misposted deposit refund, an employee paid
as a vendor, bills dodging approval and a contractor without a TIN are at least medium). A
vendor sharing an employee's TIN is high. Duplicate customers have no amount: one matching
signal is low, two medium, three or more high.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import String, and_, case, cast, func, or_, select
from sqlmodel import Session

from finance.anomalies.rules import AnomalyRules, max_severity
from finance.billing import recognition_schedule
from finance.models import (
    Account,
    Bill,
    BillStatus,
    Deposit,
    Employee,
    Expense,
    ExpenseStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    JournalEntry,
    JournalLine,
    Member,
    Severity,
    Vendor,
)
from finance.money import format_cents
from finance.util import chunks

ISSUED = (InvoiceStatus.OPEN.value, InvoiceStatus.PAID.value)


@dataclass(frozen=True)
class Finding:
    """One detected problem, before it is stored as an ``Anomaly`` row."""

    kind: str
    severity: Severity
    reason: str
    records: dict[str, list[int]]
    location_id: int | None
    amount_cents: int | None
    occurred_on: date | None
    fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity.value, "reason": self.reason,
                "records": self.records, "location_id": self.location_id,
                "amount_cents": self.amount_cents,
                "occurred_on": self.occurred_on.isoformat() if self.occurred_on else None,
                "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Scope:
    """What a scan looks at: records dated in [start, end], optionally at one location."""

    start: date
    end: date
    location_id: int | None = None

    def covers(self, day: date | None) -> bool:
        return day is not None and self.start <= day <= self.end


def fingerprint(kind: str, subject: dict[str, Sequence[int | str]]) -> str:
    """``kind`` + the sorted subject ids: stable across scans, at most 200 characters."""
    parts = [f"{key}={','.join(str(v) for v in sorted(set(values)))}"
             for key, values in sorted(subject.items()) if values]
    text = f"{kind}:{';'.join(parts)}"
    if len(text) <= 200:
        return text
    return f"{kind}:sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def _records(**groups: Iterable[int]) -> dict[str, list[int]]:
    return {key: sorted(set(ids)) for key, ids in groups.items() if ids}


def _finding(rules: AnomalyRules, kind: str, reason: str, records: dict[str, list[int]], *,
             location_id: int | None, amount: int | None, on: date | None,
             subject: dict[str, Sequence[int | str]] | None = None,
             severity: Severity | None = None) -> Finding:
    level = rules.severity(kind, amount)
    if severity is not None:
        level = max_severity(level, severity)
    return Finding(kind, level, reason, records, location_id, amount, on,
                   fingerprint(kind, subject if subject is not None else records))


def _ratio(value: Decimal) -> tuple[int, int]:
    num, den = value.as_integer_ratio()
    return num, den


def _pct(fraction: Decimal) -> str:
    return f"{(fraction * 100).normalize():f}%"


def _date_in(column: Any, scope: Scope) -> Any:
    return and_(column >= scope.start, column <= scope.end)


def _account_names(session: Session) -> dict[str, str]:
    return {code: name for code, name in session.execute(select(Account.code, Account.name))}


def _account_label(names: dict[str, str], code: str | None) -> str:
    if code is None:
        return "no account"
    return f"{code} {names[code]}" if code in names else code


def _quote(text: str | None, limit: int = 80) -> str:
    text = " ".join((text or "").split())
    return f"'{text[: limit - 1]}…'" if len(text) > limit else f"'{text}'"


# --------------------------------------------------------------------------- normalization

_WORD = re.compile(r"[a-z0-9]+")
_ADDRESS_WORDS = {
    "street": "st", "avenue": "ave", "av": "ave", "boulevard": "blvd", "road": "rd",
    "drive": "dr", "lane": "ln", "place": "pl", "court": "ct", "suite": "ste",
    "apartment": "apt", "unit": "apt", "north": "n", "south": "s", "east": "e", "west": "w",
    "floor": "fl", "parkway": "pkwy", "highway": "hwy", "square": "sq",
}


def normalize_name(name: str | None, suffixes: frozenset[str] = frozenset()) -> str:
    """Lower-case words, ``&`` read as ``and``, legal suffixes (LLC, Inc, ...) dropped."""
    words = _WORD.findall((name or "").lower().replace("&", " and "))
    while words and words[-1] in suffixes:
        words.pop()
    while words and words[0] == "the":
        words.pop(0)
    return " ".join(words)


def normalize_address(address: str | None) -> str:
    words = _WORD.findall((address or "").lower())
    return " ".join(_ADDRESS_WORDS.get(w, w) for w in words)


def normalize_tin(tin: str | None) -> str:
    digits = re.sub(r"\D", "", tin or "")
    return digits if len(digits) >= 6 else ""


def email_domain(email: str | None) -> str:
    if not email or "@" not in email:
        return ""
    return email.rsplit("@", 1)[1].strip().lower().rstrip(".")


def _last4(text: str) -> str:
    return f"ending {text[-4:]}"


# --------------------------------------------------------------------------- invoice_jump


def detect_invoice_jump(session: Session, rules: AnomalyRules, scope: Scope) -> list[Finding]:
    """Issued monthly invoices above ``multiple`` x the median of the member's previous ones."""
    inv = Invoice.__table__.c  # type: ignore[attr-defined]
    n = rules.jump_history
    window = {"partition_by": inv.member_id, "order_by": (inv.period, inv.id)}
    lags = [func.lag(inv.total_cents, i).over(**window).label(f"p{i}") for i in range(1, n + 1)]
    ranked = (select(inv.id, inv.member_id, inv.location_id, inv.number, inv.period,
                     inv.issue_date, inv.total_cents, *lags)
              .where(inv.status.in_(ISSUED), inv.period.is_not(None))
              .subquery())
    num, den = _ratio(rules.jump_multiple)
    past = [ranked.c[f"p{i}"] for i in range(1, n + 1)]
    stmt = (select(ranked, Member.name)
            .join(Member, Member.id == ranked.c.member_id)
            .where(_date_in(ranked.c.issue_date, scope), *[p.is_not(None) for p in past],
                   # prefilter: above the multiple of at least the smallest previous invoice
                   or_(*[ranked.c.total_cents * den > p * num for p in past])))
    if scope.location_id is not None:
        stmt = stmt.where(ranked.c.location_id == scope.location_id)
    out = []
    for row in session.execute(stmt):
        history = sorted(int(getattr(row, f"p{i}")) for i in range(n, 0, -1))
        mid = len(history) // 2
        median = (Decimal(history[mid]) if len(history) % 2
                  else (Decimal(history[mid - 1]) + history[mid]) / 2)
        if median <= 0 or Decimal(row.total_cents) <= rules.jump_multiple * median:
            continue
        excess = int((Decimal(row.total_cents) - median).to_integral_value(ROUND_HALF_UP))
        times = (Decimal(row.total_cents) / median).quantize(Decimal("0.1"), ROUND_HALF_UP)
        previous = ", ".join(format_cents(int(getattr(row, f"p{i}"))) for i in range(n, 0, -1))
        median_text = format_cents(int(median.to_integral_value(ROUND_HALF_UP)))
        reason = (f"{_possessive(row.name)} invoice {row.number or '#' + str(row.id)} for "
                  f"{row.period} is {format_cents(row.total_cents)}, {times}× the "
                  f"{median_text} median of the previous {n} invoices ({previous}); the "
                  f"threshold is {rules.jump_multiple.normalize():f}×.")
        out.append(_finding(rules, "invoice_jump", reason,
                            _records(invoice=[row.id], member=[row.member_id]),
                            location_id=row.location_id, amount=excess, on=row.issue_date))
    return out


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


# --------------------------------------------------------------------------- duplicate_charge


@dataclass(frozen=True)
class _Charge:
    type: str  # bill / expense
    id: int
    vendor_key: str
    vendor_id: int | None
    vendor_name: str
    on: date
    amount: int
    location_id: int
    label: str  # "bill NX-202608" / "card expense #12"
    number: str | None
    image: str | None


def _charges(session: Session, since: date, until: date) -> list[_Charge]:
    b, v = Bill.__table__.c, Vendor.__table__.c  # type: ignore[attr-defined]
    e = Expense.__table__.c  # type: ignore[attr-defined]
    out = []
    for row in session.execute(
        select(b.id, b.vendor_id, v.name, b.bill_date, b.amount_cents, b.location_id, b.number)
        .join(Vendor, v.id == b.vendor_id)
        .where(b.bill_date >= since, b.bill_date <= until, b.status != BillStatus.REJECTED.value)
    ):
        out.append(_Charge("bill", row.id, f"v{row.vendor_id}", row.vendor_id, row.name,
                           row.bill_date, row.amount_cents, row.location_id,
                           f"bill {row.number}", row.number, None))
    for row in session.execute(
        select(e.id, e.vendor_id, e.vendor_name, v.name, e.expense_date, e.amount_cents,
               e.location_id, e.payment_method, e.image_sha256)
        .outerjoin(Vendor, v.id == e.vendor_id)
        .where(e.expense_date >= since, e.expense_date <= until,
               e.status != ExpenseStatus.DISCARDED.value)
    ):
        key = f"v{row.vendor_id}" if row.vendor_id else f"n:{normalize_name(row.vendor_name)}"
        method = "card" if row.payment_method == "card" else row.payment_method
        out.append(_Charge("expense", row.id, key, row.vendor_id, row.name or row.vendor_name,
                           row.expense_date, row.amount_cents, row.location_id,
                           f"{method} expense #{row.id}", None, row.image_sha256))
    return out


class _Groups:
    """Union-find over hashable items: pairs in, connected groups out."""

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[Any]]:
        out: dict[Any, list[Any]] = defaultdict(list)
        for x in self.parent:
            out[self.find(x)].append(x)
        return [sorted(g) for _, g in sorted(out.items())]


def _close(a: int, b: int, tolerance: Decimal) -> bool:
    num, den = _ratio(tolerance)
    return abs(a - b) * den <= num * max(abs(a), abs(b))


def _number_key(number: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (number or "").lower())


def detect_duplicate_charge(session: Session, rules: AnomalyRules, scope: Scope
                            ) -> list[Finding]:
    """Same vendor, amounts within the tolerance, dates within the window, not a cadence."""
    history_start = scope.start - timedelta(days=max(rules.dup_history_days,
                                                     rules.dup_window_days))
    by_vendor: dict[str, list[_Charge]] = defaultdict(list)
    for charge in _charges(session, history_start, scope.end):
        by_vendor[charge.vendor_key].append(charge)
    out = []
    for key in sorted(by_vendor):
        charges = sorted(by_vendor[key], key=lambda c: (c.on, c.type, c.id))
        groups = _Groups()
        for i, a in enumerate(charges):
            for b in charges[i + 1:]:
                gap = (b.on - a.on).days
                if gap > rules.dup_window_days:
                    break
                if not _close(a.amount, b.amount, rules.dup_tolerance):
                    continue
                if not scope.covers(b.on):
                    continue
                if scope.location_id is not None and scope.location_id not in (
                        a.location_id, b.location_id):
                    continue
                if a.type == b.type == "expense" and (
                        (a.on == b.on and a.amount == b.amount)
                        or (a.image is not None and a.image == b.image)):
                    continue  # the same receipt twice: duplicate_receipt reports it
                if not _suspicious_pair(a, b, gap, charges, rules):
                    continue
                groups.union((a.type, a.id), (b.type, b.id))
        lookup = {(c.type, c.id): c for c in charges}
        for group in groups.groups():
            items = sorted((lookup[g] for g in group), key=lambda c: (c.on, c.type, c.id))
            out.append(_duplicate_charge_finding(rules, items))
    return out


def _suspicious_pair(a: _Charge, b: _Charge, gap: int, charges: list[_Charge],
                     rules: AnomalyRules) -> bool:
    if gap < rules.dup_recurring_min_gap_days:
        return True  # no billing cadence is shorter than this: a double charge
    ka, kb = _number_key(a.number), _number_key(b.number)
    if ka and kb and ka != kb and (ka.startswith(kb) or kb.startswith(ka)):
        return True  # a re-sent bill ("NX-202608" and "NX-202608-R")
    # a cadence: the vendor charged this amount often enough around the pair (two windows
    # either side, so a quarterly charge counts its neighbours)
    near = timedelta(days=2 * rules.dup_window_days)
    same_amount = sum(1 for c in charges if a.on - near <= c.on <= b.on + near
                      and _close(c.amount, a.amount, rules.dup_tolerance))
    return same_amount < rules.dup_recurring_min_count  # one-off amount seen twice


def _duplicate_charge_finding(rules: AnomalyRules, items: list[_Charge]) -> Finding:
    first, last = items[0], items[-1]
    days = (last.on - first.on).days
    span = "on the same day" if days == 0 else f"within {days} day{'s' if days != 1 else ''}"
    amounts = {c.amount for c in items}
    what = (f"{format_cents(first.amount)}" if len(amounts) == 1
            else f"{' / '.join(format_cents(a) for a in sorted(amounts))}")
    times = {2: "twice", 3: "three times"}.get(len(items), f"{len(items)} times")
    listed = "; ".join(f"{c.label} on {c.on.isoformat()}" for c in items)
    reason = (f"{first.vendor_name} charged {what} {times} {span}: {listed} (amounts within "
              f"{_pct(rules.dup_tolerance)}; a regular monthly charge would be about a month "
              "apart).")
    extra = sum(c.amount for c in items[1:])
    vendor = [first.vendor_id] if first.vendor_id else []
    records = _records(bill=[c.id for c in items if c.type == "bill"],
                       expense=[c.id for c in items if c.type == "expense"], vendor=vendor)
    return _finding(rules, "duplicate_charge", reason, records, location_id=last.location_id,
                    amount=extra, on=last.on)


# --------------------------------------------------------------------------- duplicate_receipt


def detect_duplicate_receipt(session: Session, rules: AnomalyRules, scope: Scope
                             ) -> list[Finding]:
    """Expenses with the same vendor, date and total, or the same receipt image."""
    e = Expense.__table__.c  # type: ignore[attr-defined]
    live = e.status != ExpenseStatus.DISCARDED.value
    vendor_key = func.coalesce(cast(e.vendor_id, String), func.lower(func.trim(e.vendor_name)))
    where = [live, _date_in(e.expense_date, scope)]
    if scope.location_id is not None:
        where.append(e.location_id == scope.location_id)
    same = (select(vendor_key.label("vk"), e.expense_date.label("d"), e.amount_cents.label("a"))
            .where(*where).group_by(vendor_key, e.expense_date, e.amount_cents)
            .having(func.count() > 1).subquery())
    image_having = [func.count() > 1, func.max(e.expense_date) >= scope.start,
                    func.min(e.expense_date) <= scope.end]
    if scope.location_id is not None:
        image_having.append(
            func.max(case((e.location_id == scope.location_id, 1), else_=0)) > 0)
    images = (select(e.image_sha256.label("h")).where(live, e.image_sha256.is_not(None))
              .group_by(e.image_sha256).having(*image_having))
    cols = (e.id, e.vendor_id, e.vendor_name, e.expense_date, e.amount_cents, e.location_id,
            e.image_sha256, e.submitted_by, e.description)
    rows = {}
    for row in session.execute(
        select(*cols).join(same, and_(vendor_key == same.c.vk, e.expense_date == same.c.d,
                                      e.amount_cents == same.c.a)).where(live)
    ):
        rows[row.id] = row
    image_subq = images.subquery()
    for row in session.execute(
        select(*cols).join(image_subq, e.image_sha256 == image_subq.c.h).where(live)
    ):
        rows[row.id] = row
    groups = _Groups()
    by_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for row in rows.values():
        vk = str(row.vendor_id) if row.vendor_id else (row.vendor_name or "").strip().lower()
        by_key[("same", vk, row.expense_date, row.amount_cents)].append(row.id)
        if row.image_sha256:
            by_key[("image", row.image_sha256)].append(row.id)
    same_image: set[frozenset[int]] = set()
    for key, ids in by_key.items():
        if len(ids) < 2:
            continue
        if key[0] == "image":
            same_image.add(frozenset(ids))
        for other in ids[1:]:
            groups.union(ids[0], other)
    out = []
    for group in groups.groups():
        items = [rows[i] for i in group]
        first = items[0]
        image = any(set(group) & ids for ids in same_image)
        listed = "; ".join(
            f"#{r.id} {format_cents(r.amount_cents)} on {r.expense_date.isoformat()}"
            + (f" by {r.submitted_by}" if r.submitted_by else "") for r in items)
        if image and len({(r.expense_date, r.amount_cents) for r in items}) > 1:
            reason = (f"The same receipt image from {first.vendor_name} was submitted "
                      f"{len(items)} times with different readings: {listed}.")
        elif image:
            reason = (f"The same receipt image from {first.vendor_name} was submitted "
                      f"{len(items)} times: {listed}.")
        else:
            reason = (f"A receipt from {first.vendor_name} for {format_cents(first.amount_cents)} "
                      f"dated {first.expense_date.isoformat()} was submitted {len(items)} times "
                      f"(same vendor, date and total): {listed}.")
        extra = sum(r.amount_cents for r in items[1:])
        last = max(items, key=lambda r: (r.expense_date, r.id))
        out.append(_finding(rules, "duplicate_receipt", reason, _records(expense=group),
                            location_id=last.location_id, amount=extra, on=last.expense_date))
    return out


# --------------------------------------------------------------------------- duplicate_customer


def detect_duplicate_customer(session: Session, rules: AnomalyRules, scope: Scope
                              ) -> list[Finding]:
    """Two members that are probably one: same normalized name, company domain or tax id.

    Master data, checked as of the scan's end (members created by then); a location scope
    keeps pairs where either member calls that location home.
    """
    m = Member.__table__.c  # type: ignore[attr-defined]
    members = {}
    for row in session.execute(
        select(m.id, m.code, m.name, m.kind, m.email, m.phone, m.tax_id, m.company_id,
               m.home_location_id, m.joined_on, m.created_at)
    ):
        created = row.joined_on or row.created_at.date()
        if created <= scope.end:
            members[row.id] = row
    keys: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in members.values():
        name = normalize_name(row.name, rules.legal_suffixes)
        if name:
            keys[("name", name)].append(row.id)
        domain = email_domain(row.email)
        if domain and domain not in rules.freemail_domains:
            keys[("domain", domain)].append(row.id)
        tin = normalize_tin(row.tax_id)
        if tin:
            keys[("tin", tin)].append(row.id)
    pairs: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)
    for (signal, value), ids in keys.items():
        if len(ids) < 2:
            continue
        if signal == "domain" and len(ids) > rules.dup_customer_max_domain_group:
            continue  # many members on one domain: an organization, not a duplicate
        ids = sorted(ids)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                pairs[(a, b)][signal] = value
    out = []
    for (a_id, b_id), signals in sorted(pairs.items()):
        a, b = members[a_id], members[b_id]
        if a.company_id == b.id or b.company_id == a.id or (
                a.company_id is not None and a.company_id == b.company_id):
            continue  # a person and their company, or colleagues
        if scope.location_id is not None and scope.location_id not in (
                a.home_location_id, b.home_location_id):
            continue
        phone_a, phone_b = re.sub(r"\D", "", a.phone or ""), re.sub(r"\D", "", b.phone or "")
        same_phone = len(phone_a) >= 7 and phone_a == phone_b
        older, newer = sorted((a, b), key=lambda r: (r.joined_on or r.created_at.date(), r.id))
        parts = []
        if "name" in signals:
            parts.append("the same name once legal suffixes are dropped")
        if "domain" in signals:
            parts.append(f"the same email domain {signals['domain']}")
        if "tin" in signals:
            parts.append(f"the same tax id ({_last4(signals['tin'])})")
        if same_phone:
            parts.append("the same phone number")
        count = len(signals) + int(same_phone)
        level = (Severity.HIGH if count >= 3 else Severity.MEDIUM if count == 2
                 else Severity.LOW)
        reason = (f"{newer.name} ({newer.code}) looks like a second record for {older.name} "
                  f"({older.code}): {_join(parts)}.")
        out.append(_finding(rules, "duplicate_customer", reason, _records(member=[a_id, b_id]),
                            location_id=newer.home_location_id, amount=None,
                            on=newer.joined_on or newer.created_at.date(), severity=level))
    return out


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------- deposit_misposted


def detect_deposit_misposted(session: Session, rules: AnomalyRules, scope: Scope
                             ) -> list[Finding]:
    """Deposit refunds that debit anything but the deposits liability (2300)."""
    je, jl = JournalEntry.__table__.c, JournalLine.__table__.c  # type: ignore[attr-defined]
    acct, dep = Account.__table__.c, Deposit.__table__.c  # type: ignore[attr-defined]
    reversal = JournalEntry.__table__.alias("reversal")  # type: ignore[attr-defined]
    refunds = (select(dep.refund_journal_entry_id)
               .where(dep.refund_journal_entry_id.is_not(None)))
    entries = (select(je.id, je.entry_date, je.source_type, je.source_id)
               .where(or_(je.source_type == "deposit", je.id.in_(refunds)),
                      je.reverses_id.is_(None), _date_in(je.entry_date, scope),
                      ~select(reversal.c.id).where(reversal.c.reverses_id == je.id).exists())
               .subquery())
    stmt = (select(entries.c.id, entries.c.entry_date, entries.c.source_type,
                   entries.c.source_id, acct.code, acct.name, jl.location_id, jl.member_id,
                   func.sum(jl.amount_cents).label("debit"))
            .join(JournalLine, jl.entry_id == entries.c.id)
            .join(Account, acct.id == jl.account_id)
            .where(jl.amount_cents > 0)
            .group_by(entries.c.id, entries.c.entry_date, entries.c.source_type,
                      entries.c.source_id, acct.code, acct.name, jl.location_id, jl.member_id))
    if scope.location_id is not None:
        stmt = stmt.where(jl.location_id == scope.location_id)
    wrong: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(stmt):
        if row.code != rules.deposit_account:
            wrong[row.id].append(row)
    if not wrong:
        return []
    deposits = {}
    for chunk in chunks(sorted(wrong), 2000):
        for row in session.execute(
            select(dep.id, dep.member_id, dep.refund_journal_entry_id, Member.name)
            .join(Member, Member.id == dep.member_id)
            .where(dep.refund_journal_entry_id.in_(chunk))
        ):
            deposits[row.refund_journal_entry_id] = row
    names = _account_names(session)
    out = []
    for entry_id in sorted(wrong):
        rows = wrong[entry_id]
        first = rows[0]
        d = deposits.get(entry_id)
        deposit_id = d.id if d else (first.source_id if first.source_type == "deposit" else None)
        member_id = d.member_id if d else first.member_id
        who = f" to {d.name}" if d else ""
        amount = sum(int(r.debit) for r in rows)
        accounts = _join([f"{r.code} {r.name}" for r in rows])
        reason = (f"The security deposit refund of {format_cents(amount)}{who} "
                  f"({'deposit #' + str(deposit_id) + ', ' if deposit_id else ''}journal entry "
                  f"#{entry_id} on {first.entry_date.isoformat()}) was debited to {accounts} "
                  f"instead of {_account_label(names, rules.deposit_account)}; the deposit "
                  "liability is still on the books.")
        records = _records(deposit=[deposit_id] if deposit_id else [],
                           journal_entry=[entry_id], member=[member_id] if member_id else [])
        out.append(_finding(rules, "deposit_misposted", reason, records,
                            location_id=first.location_id, amount=amount, on=first.entry_date,
                            subject={"journal_entry": [entry_id]}))
    return out


# --------------------------------------------------------------------------- capex_as_opex


def detect_capex_as_opex(session: Session, rules: AnomalyRules, scope: Scope) -> list[Finding]:
    """Bills and expenses at or above the capitalization threshold in a watched expense account."""
    if not rules.capex_watch_accounts:
        return []
    b, e = Bill.__table__.c, Expense.__table__.c  # type: ignore[attr-defined]
    v = Vendor.__table__.c  # type: ignore[attr-defined]
    names = _account_names(session)
    limit = rules.capex_threshold_cents
    out = []
    bills = (select(b.id, b.number, b.vendor_id, v.name, b.bill_date, b.amount_cents,
                    b.account_code, b.memo, b.location_id)
             .join(Vendor, v.id == b.vendor_id)
             .where(b.amount_cents >= limit, b.account_code.in_(rules.capex_watch_accounts),
                    b.status != BillStatus.REJECTED.value, _date_in(b.bill_date, scope)))
    expenses = (select(e.id, e.vendor_id, e.vendor_name, e.expense_date, e.amount_cents,
                       e.account_code, e.description, e.location_id)
                .where(e.amount_cents >= limit, e.account_code.in_(rules.capex_watch_accounts),
                       e.status != ExpenseStatus.DISCARDED.value,
                       _date_in(e.expense_date, scope)))
    if scope.location_id is not None:
        bills = bills.where(b.location_id == scope.location_id)
        expenses = expenses.where(e.location_id == scope.location_id)
    tail = (f"is at or above the {format_cents(limit)} capitalization threshold but was coded "
            "to {account}; it belongs in a fixed-asset account (e.g. 1500 or 1510) and is "
            "depreciated.")
    for row in session.execute(bills):
        reason = (f"Bill {row.number} from {row.name} ({format_cents(row.amount_cents)}, "
                  f"{_quote(row.memo)}, {row.bill_date.isoformat()}) "
                  + tail.format(account=_account_label(names, row.account_code)))
        out.append(_finding(rules, "capex_as_opex", reason,
                            _records(bill=[row.id], vendor=[row.vendor_id]),
                            location_id=row.location_id, amount=row.amount_cents,
                            on=row.bill_date, subject={"bill": [row.id]}))
    for row in session.execute(expenses):
        reason = (f"Expense #{row.id} at {row.vendor_name} ({format_cents(row.amount_cents)}, "
                  f"{_quote(row.description)}, {row.expense_date.isoformat()}) "
                  + tail.format(account=_account_label(names, row.account_code)))
        vendor = [row.vendor_id] if row.vendor_id else []
        out.append(_finding(rules, "capex_as_opex", reason,
                            _records(expense=[row.id], vendor=vendor),
                            location_id=row.location_id, amount=row.amount_cents,
                            on=row.expense_date, subject={"expense": [row.id]}))
    return out


# --------------------------------------------------------------------------- vendor_is_employee


def _vendor_activity(session: Session, scope: Scope, vendor_ids: Sequence[int]
                     ) -> dict[int, list[tuple[str, int, date, int, int]]]:
    """(type, id, date, amount, location) of each vendor's bills and expenses in the scope."""
    b, e = Bill.__table__.c, Expense.__table__.c  # type: ignore[attr-defined]
    out: dict[int, list[tuple[str, int, date, int, int]]] = defaultdict(list)
    for chunk in chunks(sorted(vendor_ids), 2000):
        for row in session.execute(
            select(b.id, b.vendor_id, b.bill_date, b.amount_cents, b.location_id)
            .where(b.vendor_id.in_(chunk), _date_in(b.bill_date, scope),
                   b.status != BillStatus.REJECTED.value)
        ):
            out[row.vendor_id].append(("bill", row.id, row.bill_date, row.amount_cents,
                                       row.location_id))
        for row in session.execute(
            select(e.id, e.vendor_id, e.expense_date, e.amount_cents, e.location_id)
            .where(e.vendor_id.in_(chunk), _date_in(e.expense_date, scope),
                   e.status != ExpenseStatus.DISCARDED.value)
        ):
            out[row.vendor_id].append(("expense", row.id, row.expense_date, row.amount_cents,
                                       row.location_id))
    return out


def _name_matches(vendor_name: str, employee_name: str) -> bool:
    """The employee's last name and first name (or its initial) are words of the vendor's."""
    words = set(_WORD.findall(vendor_name.lower()))
    person = _WORD.findall(employee_name.lower())
    if len(person) < 2:
        return False
    first, last = person[0], person[-1]
    return last in words and (first in words or first[0] in words)


def detect_vendor_is_employee(session: Session, rules: AnomalyRules, scope: Scope
                              ) -> list[Finding]:
    """A vendor that matches an employee by TIN, address, name or bank account."""
    v, emp = Vendor.__table__.c, Employee.__table__.c  # type: ignore[attr-defined]
    vendors = [row for row in session.execute(
        select(v.id, v.name, v.tin, v.address, v.bank_account_last4, v.created_at))
        if row.created_at.date() <= scope.end]
    employees = list(session.execute(
        select(emp.id, emp.name, emp.tin, emp.address, emp.bank_account_last4)))
    by_tin: dict[str, list[Any]] = defaultdict(list)
    by_address: dict[str, list[Any]] = defaultdict(list)
    by_bank: dict[str, list[Any]] = defaultdict(list)
    for person in employees:
        if normalize_tin(person.tin):
            by_tin[normalize_tin(person.tin)].append(person)
        if normalize_address(person.address):
            by_address[normalize_address(person.address)].append(person)
        if person.bank_account_last4:
            by_bank[person.bank_account_last4.strip()].append(person)
    strong, weak = rules.employee_strong_signals, rules.employee_weak_signals
    matches: list[tuple[Any, Any, list[str]]] = []
    for vendor in vendors:
        hits: dict[int, list[str]] = defaultdict(list)
        for person in by_tin.get(normalize_tin(vendor.tin), []) if normalize_tin(vendor.tin) \
                else []:
            hits[person.id].append("tin")
        address = normalize_address(vendor.address)
        for person in by_address.get(address, []) if address else []:
            hits[person.id].append("address")
        bank = (vendor.bank_account_last4 or "").strip()
        for person in by_bank.get(bank, []) if bank else []:
            hits[person.id].append("bank_last4")
        for person in employees:
            if _name_matches(vendor.name, person.name):
                hits[person.id].append("name")
        for person in employees:
            signals = hits.get(person.id, [])
            n_strong = sum(1 for s in signals if s in strong)
            n_weak = sum(1 for s in signals if s in weak)
            if n_strong >= 1 or n_weak >= 2 or (n_weak and n_strong):
                matches.append((vendor, person, signals))
    if not matches:
        return []
    activity = _vendor_activity(session, scope, [vendor.id for vendor, _, _ in matches])
    out = []
    words = {"tin": "TIN", "address": "address", "name": "name",
             "bank_last4": "bank account (last 4 digits)"}
    for vendor, person, signals in matches:
        items = activity.get(vendor.id, [])
        created = vendor.created_at.date()
        if not items and not scope.covers(created):
            continue  # no money moved in the scope and not new in it
        if scope.location_id is not None and not any(
                it[4] == scope.location_id for it in items):
            continue
        paid = sum(it[3] for it in items)
        last = max(items, key=lambda it: (it[2], it[1])) if items else None
        shared = _join([words[s] for s in signals])
        money = (f"; it was paid {format_cents(paid)} in {len(items)} "
                 f"bill{'s' if len(items) != 1 else ''}/expense{'s' if len(items) != 1 else ''}"
                 f" between {scope.start.isoformat()} and {scope.end.isoformat()}"
                 if items else "; no payments yet")
        reason = (f"Vendor {vendor.name} shares its {shared} with employee {person.name}"
                  f"{money}. Check that this is not an employee paid outside payroll.")
        records = _records(vendor=[vendor.id], employee=[person.id],
                           bill=[it[1] for it in items if it[0] == "bill"],
                           expense=[it[1] for it in items if it[0] == "expense"])
        out.append(_finding(
            rules, "vendor_is_employee", reason, records,
            location_id=last[4] if last else None, amount=paid,
            on=last[2] if last else created,
            subject={"vendor": [vendor.id], "employee": [person.id]},
            severity=Severity.HIGH if "tin" in signals or len(signals) >= 2 else None))
    return out


# --------------------------------------------------------------------------- just_under_threshold


def detect_just_under_threshold(session: Session, rules: AnomalyRules, scope: Scope
                                ) -> list[Finding]:
    """Vendors with repeated bills just under an approval threshold (split to dodge review)."""
    b, v = Bill.__table__.c, Vendor.__table__.c  # type: ignore[attr-defined]
    num, den = _ratio(rules.under_band)
    bands = [(t, and_(b.amount_cents * den >= t * num, b.amount_cents <= t))
             for t in rules.approval_thresholds_cents]
    if not bands:
        return []
    stmt = (select(b.id, b.vendor_id, v.name, b.number, b.bill_date, b.amount_cents,
                   b.location_id)
            .join(Vendor, v.id == b.vendor_id)
            .where(b.bill_date <= scope.end, or_(*[cond for _, cond in bands])))
    series: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for row in session.execute(stmt):
        for t in rules.approval_thresholds_cents:
            if row.amount_cents * den >= t * num and row.amount_cents <= t:
                series[(row.vendor_id, t)].append(row)
                break
    out = []
    for (vendor_id, t), rows in sorted(series.items()):
        rows.sort(key=lambda r: (r.bill_date, r.id))
        chains: list[list[Any]] = [[rows[0]]]
        for row in rows[1:]:
            if (row.bill_date - chains[-1][-1].bill_date).days <= rules.under_window_days:
                chains[-1].append(row)
            else:
                chains.append([row])
        for chain in chains:
            if len(chain) < rules.under_repeat_count:
                continue
            if not any(scope.covers(r.bill_date) for r in chain):
                continue
            if scope.location_id is not None and not any(
                    r.location_id == scope.location_id for r in chain):
                continue
            total = sum(r.amount_cents for r in chain)
            amounts = ", ".join(format_cents(r.amount_cents) for r in chain)
            reason = (f"{chain[0].name} sent {len(chain)} bills between "
                      f"{chain[0].bill_date.isoformat()} and {chain[-1].bill_date.isoformat()} "
                      f"just under the {format_cents(t)} approval threshold ({amounts}; "
                      f"{format_cents(total)} in all). Bills split to stay under a threshold "
                      "skip the approval they need.")
            out.append(_finding(
                rules, "just_under_threshold", reason,
                _records(bill=[r.id for r in chain], vendor=[vendor_id]),
                location_id=chain[-1].location_id, amount=total, on=chain[-1].bill_date,
                subject={"vendor": [vendor_id], "threshold": [t], "first_bill": [chain[0].id]}))
    return out


# --------------------------------------------------------------------------- contractor_missing_tin


def detect_contractor_missing_tin(session: Session, rules: AnomalyRules, scope: Scope
                                  ) -> list[Finding]:
    """Contractors without a TIN paid (not by card) over the 1099-NEC threshold in a year."""
    b, e, v = Bill.__table__.c, Expense.__table__.c, Vendor.__table__.c  # type: ignore[attr-defined]
    no_tin = or_(v.tin.is_(None), func.trim(v.tin) == "")
    paid_into = (select(b.vendor_id).where(b.account_code.in_(rules.contractor_accounts))
                 if rules.contractor_accounts else None)
    contractor = v.is_contractor.is_(True)
    if paid_into is not None:
        contractor = or_(contractor, v.id.in_(paid_into))
    vendors = {row.id: row for row in session.execute(
        select(v.id, v.name).where(no_tin, contractor))}
    if not vendors:
        return []
    first_year = date(scope.start.year, 1, 1)
    excluded = sorted(rules.tin_excluded_methods)
    payments: dict[tuple[int, int], list[tuple[date, str, int, int, int, str]]] = \
        defaultdict(list)
    for chunk in chunks(sorted(vendors), 2000):
        for row in session.execute(
            select(b.id, b.vendor_id, b.paid_on, b.amount_cents, b.location_id,
                   b.payment_method)
            .where(b.vendor_id.in_(chunk), b.status == BillStatus.PAID.value,
                   b.paid_on >= first_year, b.paid_on <= scope.end,
                   or_(b.payment_method.is_(None), b.payment_method.not_in(excluded)))
        ):
            payments[(row.vendor_id, row.paid_on.year)].append(
                (row.paid_on, "bill", row.id, row.amount_cents, row.location_id,
                 row.payment_method or "unknown method"))
        for row in session.execute(
            select(e.id, e.vendor_id, e.expense_date, e.amount_cents, e.location_id,
                   e.payment_method)
            .where(e.vendor_id.in_(chunk), e.status == ExpenseStatus.POSTED.value,
                   e.expense_date >= first_year, e.expense_date <= scope.end,
                   e.payment_method.not_in(excluded))
        ):
            payments[(row.vendor_id, row.expense_date.year)].append(
                (row.expense_date, "expense", row.id, row.amount_cents, row.location_id,
                 row.payment_method))
    out = []
    for (vendor_id, year), items in sorted(payments.items()):
        items.sort()
        threshold = rules.tin_threshold(year)
        total, crossed = 0, None
        for item in items:
            total += item[3]
            if crossed is None and total >= threshold:
                crossed = item[0]
        if crossed is None or not any(scope.covers(it[0]) for it in items):
            continue
        if scope.location_id is not None and not any(
                it[4] == scope.location_id for it in items):
            continue
        methods = _join(sorted({it[5] for it in items}))
        n = len(items)
        reason = (f"{vendors[vendor_id].name} is a contractor with no TIN on file and was paid "
                  f"{format_cents(total)} in {year} by {methods} ({n} payment"
                  f"{'s' if n != 1 else ''}), over the {format_cents(threshold)} 1099-NEC "
                  "threshold: request a W-9 before filing 1099s.")
        out.append(_finding(
            rules, "contractor_missing_tin", reason,
            _records(vendor=[vendor_id], bill=[it[2] for it in items if it[1] == "bill"],
                     expense=[it[2] for it in items if it[1] == "expense"]),
            location_id=items[-1][4], amount=total, on=crossed,
            subject={"vendor": [vendor_id], "year": [year]}))
    return out


# --------------------------------------------------------------------------- unrecognized_deferred


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def detect_unrecognized_deferred(session: Session, rules: AnomalyRules, scope: Scope
                                 ) -> list[Finding]:
    """Deferred revenue whose service month started (plus grace) but is not recognized."""
    il, inv = InvoiceLine.__table__.c, Invoice.__table__.c  # type: ignore[attr-defined]
    je, jl = JournalEntry.__table__.c, JournalLine.__table__.c  # type: ignore[attr-defined]
    acct = Account.__table__.c  # type: ignore[attr-defined]
    stmt = (select(il.id, il.invoice_id, il.kind, il.description, il.amount_cents,
                   il.deferred_cents, il.service_start, il.service_end, il.location_id,
                   inv.issue_date, inv.number, inv.member_id, Member.name)
            .join(Invoice, inv.id == il.invoice_id).join(Member, Member.id == inv.member_id)
            .where(il.deferred_cents > 0, inv.status.in_(ISSUED), inv.issue_date <= scope.end,
                   il.service_start <= scope.end,
                   or_(il.service_end.is_(None), il.service_end >= scope.start)))
    if scope.location_id is not None:
        stmt = stmt.where(il.location_id == scope.location_id)
    grace = timedelta(days=rules.deferred_grace_days)
    due: dict[int, tuple[Any, list[tuple[date, int]]]] = {}
    for line in session.execute(stmt):
        issue_month = _month(line.issue_date)
        months = []
        for month, cents in recognition_schedule(line):  # type: ignore[arg-type]
            first = date(int(month[:4]), int(month[5:]), 1)
            when = max(first, line.issue_date)
            if issue_month < month and when + grace <= scope.end and cents:
                months.append((when, cents))
        if months:
            due[line.id] = (line, months)
    if not due:
        return []
    recognized: dict[int, int] = defaultdict(int)
    for chunk in chunks(sorted(due), 2000):
        for source_id, cents in session.execute(
            select(je.source_id, func.sum(jl.amount_cents))
            .join(JournalLine, jl.entry_id == je.id)
            .join(Account, acct.id == jl.account_id)
            .where(je.source_type == "recognition", je.source_id.in_(chunk),
                   acct.code == rules.deferred_account, jl.amount_cents > 0,
                   je.entry_date <= scope.end)
            .group_by(je.source_id)
        ):
            recognized[source_id] = int(cents or 0)
    names = _account_names(session)
    out = []
    for line_id in sorted(due):
        line, months = due[line_id]
        expected = sum(c for _, c in months)
        done = recognized.get(line_id, 0)
        if done >= expected:
            continue
        running, first_missing = 0, months[0][0]
        for when, cents in months:
            running += cents
            if running > done:
                first_missing = when
                break
        short = expected - done
        period = (f"service {line.service_start.isoformat()} to "
                  f"{line.service_end.isoformat()}" if line.service_end
                  else f"service from {line.service_start.isoformat()}")
        reason = (f"{_possessive(line.name)} invoice {line.number} (line #{line.id}, "
                  f"{_quote(line.description, 60)}, {period}) has "
                  f"{format_cents(short)} still in "
                  f"{_account_label(names, rules.deferred_account)} that should have been "
                  f"recognized by {scope.end.isoformat()}: {format_cents(expected)} for "
                  f"{len(months)} started month{'s' if len(months) != 1 else ''}, "
                  f"{format_cents(done)} recognized.")
        out.append(_finding(
            rules, "unrecognized_deferred", reason,
            _records(invoice=[line.invoice_id], invoice_line=[line.id],
                     member=[line.member_id]),
            location_id=line.location_id, amount=short, on=first_missing,
            subject={"invoice_line": [line.id]}))
    return out


DETECTORS: dict[str, Callable[[Session, AnomalyRules, Scope], list[Finding]]] = {
    "invoice_jump": detect_invoice_jump,
    "duplicate_charge": detect_duplicate_charge,
    "duplicate_receipt": detect_duplicate_receipt,
    "duplicate_customer": detect_duplicate_customer,
    "deposit_misposted": detect_deposit_misposted,
    "capex_as_opex": detect_capex_as_opex,
    "vendor_is_employee": detect_vendor_is_employee,
    "just_under_threshold": detect_just_under_threshold,
    "contractor_missing_tin": detect_contractor_missing_tin,
    "unrecognized_deferred": detect_unrecognized_deferred,
}
