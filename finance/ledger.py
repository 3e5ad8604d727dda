"""The double-entry ledger: chart of accounts, posting, reversal, period locks, balances.

Rules enforced here (and, for immutability, by database triggers):
- an entry balances per currency (sum of signed legs == 0); positive cents are debits;
- a posted entry is never edited or deleted: corrections are reversing entries;
- nothing posts into a locked period (YYYY-MM of the entry date);
- the trial balance is therefore zero at all times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finance import audit
from finance.bulk import insert_rows, insert_tuples
from finance.models import Account, AccountType, JournalEntry, JournalLine, Location, PeriodLock
from finance.util import chunks


class LedgerError(ValueError):
    """A posting the ledger refuses; the message says why in plain words."""


class UnbalancedEntry(LedgerError):
    pass


class PeriodLocked(LedgerError):
    pass


class UnknownAccount(LedgerError):
    pass


class AlreadyReversed(LedgerError):
    pass


# --------------------------------------------------------------------------- chart


@dataclass(frozen=True)
class AccountSpec:
    code: str
    name: str
    type: AccountType
    contra: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Chart:
    accounts: tuple[AccountSpec, ...]
    line_kind_accounts: dict[str, Any]

    def revenue_account(self, line_kind: str, desk_type: str | None = None) -> str:
        """The account an invoice line of this kind posts to."""
        target = self.line_kind_accounts.get(line_kind)
        if isinstance(target, dict):
            if desk_type is None or desk_type not in target:
                raise UnknownAccount(f"no account for {line_kind} of desk type {desk_type!r}")
            return str(target[desk_type])
        if target is None:
            raise UnknownAccount(f"no account mapped for line kind {line_kind!r}")
        return str(target)


def load_chart(knowledge_dir: Path) -> Chart:
    """Read ``chart_of_accounts.yaml``; refuse duplicates, bad types and bad codes."""
    path = knowledge_dir / "chart_of_accounts.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LedgerError(f"chart of accounts not found at {path}") from None
    specs: list[AccountSpec] = []
    seen: set[str] = set()
    for i, row in enumerate(data.get("accounts") or []):
        code = str(row.get("code", "")).strip()
        if not code.isdigit():
            raise LedgerError(f"{path.name}: account #{i + 1} has a non-numeric code {code!r}")
        if code in seen:
            raise LedgerError(f"{path.name}: account code {code} appears twice")
        seen.add(code)
        try:
            kind = AccountType(row.get("type"))
        except ValueError:
            raise LedgerError(f"{path.name}: account {code} has unknown type {row.get('type')!r}")
        specs.append(
            AccountSpec(code, str(row["name"]), kind, bool(row.get("contra")), row.get("note"))
        )
    if not specs:
        raise LedgerError(f"{path.name} defines no accounts")
    mapping = data.get("line_kind_accounts") or {}
    for target in _flatten(mapping):
        if target not in seen:
            raise LedgerError(f"{path.name}: line_kind_accounts names unknown account {target}")
    return Chart(tuple(specs), mapping)


def _flatten(mapping: dict[str, Any]) -> Iterable[str]:
    for value in mapping.values():
        if isinstance(value, dict):
            yield from (str(v) for v in value.values())
        else:
            yield str(value)


def sync_chart(session: Session, chart: Chart, *, actor: str = "system") -> int:
    """Insert missing accounts and refresh names/notes of existing ones; returns # inserted.

    Accounts are never deleted (posted lines point at them) and a code never changes type
    once it has postings.
    """
    existing = {a.code: a for a in session.execute(select(Account)).scalars()}
    added = 0
    for spec in chart.accounts:
        acct = existing.get(spec.code)
        if acct is None:
            session.add(
                Account(
                    code=spec.code,
                    name=spec.name,
                    type=spec.type.value,
                    contra=spec.contra,
                    note=spec.note,
                )
            )
            added += 1
        else:
            if acct.type != spec.type.value and _has_postings(session, acct):
                raise LedgerError(
                    f"account {spec.code} has postings as {acct.type}; it cannot become "
                    f"{spec.type.value}"
                )
            acct.name, acct.type, acct.contra, acct.note = (
                spec.name,
                spec.type.value,
                spec.contra,
                spec.note,
            )
    if added:
        audit.record(
            session, actor=actor, action="chart.sync", entity_type="account",
            details={"added": added},
        )
    session.flush()
    return added


def _has_postings(session: Session, acct: Account) -> bool:
    stmt = select(JournalLine.id).where(JournalLine.account_id == acct.id).limit(1)
    return session.execute(stmt).first() is not None


# --------------------------------------------------------------------------- posting


@dataclass(frozen=True)
class Leg:
    """One side of an entry. ``amount_cents`` > 0 debits the account, < 0 credits it."""

    account: str
    amount_cents: int
    location_id: int
    member_id: int | None = None
    vendor_id: int | None = None
    memo: str | None = None
    currency: str = "USD"


@dataclass(frozen=True)
class EntryDraft:
    entry_date: date
    memo: str
    legs: Sequence[Leg]
    source_type: str | None = None
    source_id: int | None = None
    idempotency_key: str | None = None


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


@dataclass
class _PostingContext:
    accounts: dict[str, Account]
    locked: set[str]
    locations: set[int]
    seen_keys: set[str] = field(default_factory=set)
    usable: set[str] = field(init=False)  # codes of active accounts

    def __post_init__(self) -> None:
        self.usable = {code for code, acct in self.accounts.items() if acct.active}

    @classmethod
    def load(cls, session: Session) -> _PostingContext:
        accounts = {a.code: a for a in session.execute(select(Account)).scalars()}
        locked = set(session.execute(select(PeriodLock.period)).scalars())
        locations = set(session.execute(select(Location.id)).scalars())
        return cls(accounts, locked, locations)

    def check(self, draft: EntryDraft) -> list[Leg]:
        if not isinstance(draft.entry_date, date):
            raise LedgerError("entry_date must be a date")
        if not draft.memo or not draft.memo.strip():
            raise LedgerError("every entry needs a memo")
        period = period_of(draft.entry_date)
        if period in self.locked:
            raise PeriodLocked(f"period {period} is locked; post into an open period instead")
        legs = []
        totals: dict[str, int] = defaultdict(int)
        usable = self.usable
        for leg in draft.legs:
            amount = leg.amount_cents
            if type(amount) is not int and (isinstance(amount, bool)
                                            or not isinstance(amount, int)):
                raise LedgerError(
                    f"leg on {leg.account}: amounts are integer cents, "
                    f"got {type(leg.amount_cents).__name__}"
                )
            if leg.account not in usable:
                if leg.account not in self.accounts:
                    raise UnknownAccount(f"unknown account {leg.account!r}")
                raise UnknownAccount(f"account {leg.account} is inactive")
            if leg.location_id not in self.locations:
                raise LedgerError(f"leg on {leg.account}: unknown location {leg.location_id}")
            if leg.amount_cents == 0:
                continue
            totals[leg.currency] += leg.amount_cents
            legs.append(leg)
        if len(legs) < 2:
            raise UnbalancedEntry("an entry needs at least two non-zero legs")
        off = {cur: total for cur, total in totals.items() if total != 0}
        if off:
            detail = ", ".join(f"{cur} {total:+d} cents" for cur, total in sorted(off.items()))
            raise UnbalancedEntry(f"entry does not balance: debits minus credits = {detail}")
        return legs


def post_entry(session: Session, draft: EntryDraft, *, actor: str) -> JournalEntry:
    """Validate and post one entry. With an idempotency key already posted, return that one."""
    if draft.idempotency_key:
        found = session.execute(
            select(JournalEntry).where(JournalEntry.idempotency_key == draft.idempotency_key)
        ).scalar_one_or_none()
        if found is not None:
            return found
    ids = post_entries(session, [draft], actor=actor)
    entry = session.get(JournalEntry, ids[0])
    assert entry is not None
    return entry


_LINE_COLUMNS = ("entry_id", "account_id", "amount_cents", "currency", "location_id",
                 "member_id", "vendor_id", "memo")


def post_entries(
    session: Session, drafts: Sequence[EntryDraft], *, actor: str, audit_each: bool = True
) -> list[int]:
    """Validate every draft first, then insert them in bulk; all or nothing.

    Returns the new entry ids in the order of ``drafts``. ``audit_each=False`` writes one
    summary audit row for the batch (bulk loads such as the demo or an import).
    """
    if not drafts:
        return []
    ctx = _PostingContext.load(session)
    checked: list[list[Leg]] = []
    for draft in drafts:
        checked.append(ctx.check(draft))
        if draft.idempotency_key:
            if draft.idempotency_key in ctx.seen_keys:
                raise LedgerError(f"idempotency key {draft.idempotency_key!r} repeated in batch")
            ctx.seen_keys.add(draft.idempotency_key)
    entry_rows = [
        {
            "entry_date": d.entry_date,
            "memo": d.memo.strip()[:300],
            "source_type": d.source_type,
            "source_id": d.source_id,
            "idempotency_key": d.idempotency_key,
            "posted_by": actor[:40],
        }
        for d in drafts
    ]
    if ctx.seen_keys:
        taken = set()
        for chunk in chunks(sorted(ctx.seen_keys), 1000):
            taken |= set(session.execute(select(JournalEntry.idempotency_key).where(
                JournalEntry.idempotency_key.in_(chunk))).scalars())  # type: ignore[union-attr]
        if taken:
            raise LedgerError(f"already posted: {', '.join(sorted(taken)[:5])}")
    try:
        ids = insert_rows(session, JournalEntry, entry_rows)
    except IntegrityError as exc:  # a concurrent poster took a key between check and insert
        raise LedgerError("an entry with this idempotency key was already posted") from exc
    account_ids = {code: acct.id for code, acct in ctx.accounts.items()}
    line_rows = [
        (entry_id, account_ids[leg.account], leg.amount_cents, leg.currency, leg.location_id,
         leg.member_id, leg.vendor_id, leg.memo[:300] if leg.memo else None)
        for entry_id, legs in zip(ids, checked, strict=True)
        for leg in legs
    ]
    insert_tuples(session.connection(), JournalLine.__table__, _LINE_COLUMNS, line_rows)  # type: ignore[attr-defined]
    add_month_totals(session, [
        (d.entry_date, leg) for d, legs in zip(drafts, checked, strict=True) for leg in legs
    ], account_ids)
    if audit_each:
        for entry_id, draft in zip(ids, drafts, strict=True):
            audit.record(
                session, actor=actor, action="ledger.post", entity_type="journal_entry",
                entity_id=entry_id,
                details={"memo": draft.memo[:120], "date": draft.entry_date.isoformat()},
            )
    else:
        audit.record(
            session, actor=actor, action="ledger.post_batch", entity_type="journal_entry",
            entity_id=f"{ids[0]}-{ids[-1]}", details={"entries": len(ids)},
        )
    return ids



def add_month_totals(session: Session, dated_legs: Sequence[tuple[date, Leg]],
                     account_ids: dict[str, int]) -> None:
    """Add posted legs to ``ledger_month_total`` (an upsert per account/location/month)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from finance.models import LedgerMonthTotal

    sums: dict[tuple[int, int, str, str], list[int]] = {}
    for day, leg in dated_legs:
        key = (account_ids[leg.account], leg.location_id, leg.currency,
               f"{day.year:04d}-{day.month:02d}")
        acc = sums.setdefault(key, [0, 0, 0, 0])
        debit = leg.amount_cents if leg.amount_cents > 0 else 0
        acc[0] += leg.amount_cents
        acc[1] += debit
        if leg.member_id is not None:
            acc[2] += leg.amount_cents
            acc[3] += debit
    if not sums:
        return
    table = LedgerMonthTotal.__table__  # type: ignore[attr-defined]
    dialect_insert = (pg_insert if session.get_bind().dialect.name == "postgresql"
                      else sqlite_insert)
    rows = [{"account_id": a, "location_id": loc, "currency": cur, "month": month,
             "net_cents": v[0], "debit_cents": v[1], "member_net_cents": v[2],
             "member_debit_cents": v[3]}
            for (a, loc, cur, month), v in sorted(sums.items())]  # sorted: no deadlocks
    stmt = dialect_insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "location_id", "currency", "month"],
        set_={name: table.c[name] + stmt.excluded[name]
              for name in ("net_cents", "debit_cents", "member_net_cents",
                           "member_debit_cents")})
    for chunk in chunks(rows, 1000):
        session.execute(stmt, list(chunk))


def rebuild_month_totals(session: Session) -> int:
    """Recompute ``ledger_month_total`` from the journal (migrations and repairs)."""
    from sqlalchemy import case, delete, insert

    from finance.models import LedgerMonthTotal

    month = (func.to_char(JournalEntry.entry_date, "YYYY-MM")
             if session.get_bind().dialect.name == "postgresql"
             else func.strftime("%Y-%m", JournalEntry.entry_date))
    debit = case((JournalLine.amount_cents > 0, JournalLine.amount_cents), else_=0)
    member = JournalLine.member_id.is_not(None)  # type: ignore[union-attr]
    query = (
        select(JournalLine.account_id, JournalLine.location_id, JournalLine.currency, month,
               func.sum(JournalLine.amount_cents), func.sum(debit),
               func.sum(case((member, JournalLine.amount_cents), else_=0)),
               func.sum(case((member, debit), else_=0)))
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .group_by(JournalLine.account_id, JournalLine.location_id, JournalLine.currency, month)
    )
    session.execute(delete(LedgerMonthTotal))
    session.execute(insert(LedgerMonthTotal).from_select(
        ["account_id", "location_id", "currency", "month", "net_cents", "debit_cents",
         "member_net_cents", "member_debit_cents"], query))
    return int(session.execute(select(func.count(LedgerMonthTotal.id))).scalar_one())


def entry_legs(session: Session, entry_id: int) -> list[Leg]:
    stmt = (
        select(JournalLine, Account.code)
        .join(Account, Account.id == JournalLine.account_id)
        .where(JournalLine.entry_id == entry_id)
        .order_by(JournalLine.id)
    )
    return [
        Leg(code, line.amount_cents, line.location_id, line.member_id, line.vendor_id, line.memo,
            line.currency)
        for line, code in session.execute(stmt)
    ]


def reverse_entry(
    session: Session, entry_id: int, *, on_date: date, actor: str, reason: str
) -> JournalEntry:
    """Post the mirror image of an entry on ``on_date``; an entry is reversed at most once."""
    original = session.get(JournalEntry, entry_id)
    if original is None:
        raise LedgerError(f"no journal entry {entry_id}")
    if original.reverses_id is not None:
        raise LedgerError(f"entry {entry_id} is itself a reversal; post a new entry instead")
    if not reason or not reason.strip():
        raise LedgerError("a reversal needs a reason")
    already = session.execute(
        select(JournalEntry.id).where(JournalEntry.reverses_id == entry_id)
    ).first()
    if already is not None:
        raise AlreadyReversed(f"entry {entry_id} was already reversed by entry {already[0]}")
    legs = [
        Leg(leg.account, -leg.amount_cents, leg.location_id, leg.member_id, leg.vendor_id,
            leg.memo, leg.currency)
        for leg in entry_legs(session, entry_id)
    ]
    draft = EntryDraft(on_date, f"Reversal of #{entry_id}: {reason.strip()}", legs,
                       source_type="reversal", source_id=entry_id)
    ctx = _PostingContext.load(session)
    checked = ctx.check(draft)
    entry = JournalEntry(
        entry_date=on_date, memo=draft.memo[:300], source_type="reversal", source_id=entry_id,
        reverses_id=entry_id, posted_by=actor[:40],
    )
    session.add(entry)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent reversal won the unique key
        raise AlreadyReversed(f"entry {entry_id} was already reversed") from exc
    for leg in checked:
        session.add(
            JournalLine(
                entry_id=entry.id, account_id=ctx.accounts[leg.account].id,
                amount_cents=leg.amount_cents, currency=leg.currency,
                location_id=leg.location_id, member_id=leg.member_id, vendor_id=leg.vendor_id,
                memo=leg.memo,
            )
        )
    add_month_totals(session, [(on_date, leg) for leg in checked],
                     {code: acct.id for code, acct in ctx.accounts.items()})
    audit.record(session, actor=actor, action="ledger.reverse", entity_type="journal_entry",
                 entity_id=entry.id, details={"reverses": entry_id, "reason": reason[:200]})
    session.flush()
    return entry


# --------------------------------------------------------------------------- periods


def _check_period(period: str) -> str:
    try:
        year, month = period.split("-")
        date(int(year), int(month), 1)
    except ValueError:
        raise LedgerError(f"period must look like YYYY-MM, got {period!r}") from None
    return f"{int(year):04d}-{int(month):02d}"


def lock_period(session: Session, period: str, *, actor: str) -> PeriodLock:
    period = _check_period(period)
    found = session.execute(select(PeriodLock).where(PeriodLock.period == period)).scalar_one_or_none()
    if found is not None:
        return found
    lock = PeriodLock(period=period, locked_by=actor[:40])
    session.add(lock)
    audit.record(session, actor=actor, action="period.lock", entity_type="period",
                 entity_id=period)
    session.flush()
    return lock


def unlock_period(session: Session, period: str, *, actor: str, reason: str) -> bool:
    period = _check_period(period)
    if not reason.strip():
        raise LedgerError("unlocking a period needs a reason")
    lock = session.execute(select(PeriodLock).where(PeriodLock.period == period)).scalar_one_or_none()
    if lock is None:
        return False
    session.delete(lock)
    audit.record(session, actor=actor, action="period.unlock", entity_type="period",
                 entity_id=period, details={"reason": reason[:200]})
    session.flush()
    return True


def is_locked(session: Session, day: date) -> bool:
    stmt = select(PeriodLock.id).where(PeriodLock.period == period_of(day))
    return session.execute(stmt).first() is not None


# --------------------------------------------------------------------------- balances


@dataclass(frozen=True)
class TrialBalanceRow:
    code: str
    name: str
    type: str
    currency: str
    balance_cents: int  # debit positive


@dataclass(frozen=True)
class TrialBalance:
    rows: tuple[TrialBalanceRow, ...]

    @property
    def total_debits(self) -> int:
        return sum(r.balance_cents for r in self.rows if r.balance_cents > 0)

    @property
    def total_credits(self) -> int:
        return -sum(r.balance_cents for r in self.rows if r.balance_cents < 0)

    @property
    def net_by_currency(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.rows:
            out[r.currency] += r.balance_cents
        return dict(out)

    @property
    def is_balanced(self) -> bool:
        return all(v == 0 for v in self.net_by_currency.values())


def trial_balance(
    session: Session, *, as_of: date | None = None, location_id: int | None = None
) -> TrialBalance:
    stmt = (
        select(Account.code, Account.name, Account.type, JournalLine.currency,
               func.sum(JournalLine.amount_cents))
        .join(JournalLine, JournalLine.account_id == Account.id)
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .group_by(Account.code, Account.name, Account.type, JournalLine.currency)
        .order_by(Account.code)
    )
    if as_of is not None:
        stmt = stmt.where(JournalEntry.entry_date <= as_of)
    if location_id is not None:
        stmt = stmt.where(JournalLine.location_id == location_id)
    rows = tuple(
        TrialBalanceRow(code, name, kind, cur, int(total or 0))
        for code, name, kind, cur, total in session.execute(stmt)
        if total
    )
    return TrialBalance(rows)


def balance(
    session: Session,
    account: str | Sequence[str],
    *,
    start: date | None = None,
    end: date | None = None,
    location_id: int | None = None,
    member_id: int | None = None,
) -> int:
    """Signed balance (debit positive) of one or more accounts over entry dates [start, end]."""
    codes = [account] if isinstance(account, str) else list(account)
    stmt = (
        select(func.coalesce(func.sum(JournalLine.amount_cents), 0))
        .join(Account, Account.id == JournalLine.account_id)
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .where(Account.code.in_(codes))  # type: ignore[attr-defined]
    )
    if start is not None:
        stmt = stmt.where(JournalEntry.entry_date >= start)
    if end is not None:
        stmt = stmt.where(JournalEntry.entry_date <= end)
    if location_id is not None:
        stmt = stmt.where(JournalLine.location_id == location_id)
    if member_id is not None:
        stmt = stmt.where(JournalLine.member_id == member_id)
    return int(session.execute(stmt).scalar_one())
