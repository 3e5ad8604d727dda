"""Bill approvals (accounts payable): entry, routing by amount, decisions, posting, payment.

Policy (DESIGN §4, ``knowledge/approval_policy.yaml``): a bill at or under the first threshold
is auto-approved when entered; above it, it needs each step whose threshold it exceeds, in
order (default: > $1,000 a GM; > $5,000 a GM and then the CFO). Rules every decision obeys:

- Roles come from the store (``slack_user``), re-read on every click; never from the LLM.
- Every click reloads the bill under a lock (``SELECT ... FOR UPDATE`` on PostgreSQL; a
  ``BEGIN IMMEDIATE`` write transaction on SQLite), so concurrent clicks run one after the
  other and the second sees the first. The unique key on (subject, step) of ``approval`` is the
  last line of defence: a step is decided at most once, and the AP entry posts once
  (idempotency key ``bill:<id>``).
- Steps are sequential: the CFO step opens only after the GM step is approved.
- Segregation of duties: whoever entered a bill never decides it (not even as a delegate or
  through a delegate), and nobody decides two steps of the same bill.
- An admin (and the local operator, ``Actor.system``) may decide the current step when the
  policy says ``admin_may_decide: true``; the rules above still hold for them.
- With ``location_scoped: true`` (the default) a role holder whose ``slack_user`` row names a
  home location decides only that location's bills (the Riverside GM approves Riverside's).
- A GM or CFO may name a delegate for a date range (read in the bill's location time zone);
  the delegate decides on behalf of them (``approval.on_behalf_of``) whatever their own role.
- A rejection needs a reason. Every decision writes an audit row in the same transaction.

``amount_cents`` of a bill is its total (what is owed, tax included); ``tax_cents`` is the part
of it that is tax, kept for reports. Final approval posts debit the bill's account (an expense,
or a CapEx / prepaid asset) and credit 2000 Accounts Payable; payment posts debit 2000 and
credit 1000 Operating Cash (check, ACH, cash) or 2500 Credit Card Payable (card).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finance import audit, ledger
from finance.authz import Actor, NotAuthorized, require_role, role_of
from finance.ledger import EntryDraft, Leg
from finance.models import (
    Account,
    AccountType,
    Approval,
    Bill,
    BillStatus,
    Delegation,
    Location,
    PaymentMethod,
    Role,
    SlackUser,
    Vendor,
)
from finance.money import MoneyError, format_cents, parse_amount
from finance.services import Services
from finance.settings import default_knowledge_dir
from finance.types import utcnow
from finance.util import chunks

POLICY_FILE = "approval_policy.yaml"
SUBJECT = "bill"
AP_ACCOUNT = "2000"
PAYMENT_ACCOUNT = {
    PaymentMethod.CHECK: "1000",
    PaymentMethod.ACH: "1000",
    PaymentMethod.CASH: "1000",
    PaymentMethod.CARD: "2500",
}
# Accounts a bill may debit besides expense accounts: prepaid expenses and the CapEx accounts.
NON_EXPENSE_BILL_ACCOUNTS = ("1200", "1500", "1510", "1520")
CREATORS = {Role.STAFF, Role.MANAGER, Role.GM, Role.CFO}
PAYERS = {Role.MANAGER, Role.GM, Role.CFO}
DELEGATORS = {Role.GM, Role.CFO}

DecisionKind = Literal["approve", "reject"]
Outcome = Literal["recorded", "already_decided", "not_your_step", "not_pending"]


class BillError(ValueError):
    """A bill request the service refuses; the message says why in plain words."""


class BillNotFound(BillError):
    pass


class DuplicateBill(BillError):
    pass


class PolicyError(BillError):
    """``approval_policy.yaml`` cannot be used; the message names the entry."""


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class StepRule:
    name: str
    label: str
    over_cents: int  # the step applies to bills whose total exceeds this
    roles: frozenset[Role]


@dataclass(frozen=True)
class ApprovalPolicy:
    steps: tuple[StepRule, ...]
    admin_may_decide: bool = True
    location_scoped: bool = True  # a role holder with a home location decides only its bills

    @property
    def auto_approve_max_cents(self) -> int | None:
        """Bills at or under this total are auto-approved (None: the policy has no steps)."""
        return self.steps[0].over_cents if self.steps else None

    def route(self, amount_cents: int) -> list[str]:
        """The steps a bill of this total needs, in order ([] = auto-approved)."""
        return [s.name for s in self.steps if amount_cents > s.over_cents]

    def rule(self, step: str) -> StepRule:
        for s in self.steps:
            if s.name == step:
                return s
        raise PolicyError(f"the approval policy no longer defines a {step!r} step; "
                          "restore it in approval_policy.yaml to decide this bill")

    def label(self, step: str) -> str:
        try:
            return self.rule(step).label
        except PolicyError:
            return step


_STEP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,11}$")


def load_policy(knowledge_dir: Path) -> ApprovalPolicy:
    """Read and validate ``approval_policy.yaml``; raise ``PolicyError`` naming what is wrong."""
    path = knowledge_dir / POLICY_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"approval policy not found at {path}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{POLICY_FILE} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{POLICY_FILE} must be a mapping with a `steps` list")
    flags = {}
    for flag in ("admin_may_decide", "location_scoped"):
        flags[flag] = data.get(flag, True)
        if not isinstance(flags[flag], bool):
            raise PolicyError(f"{POLICY_FILE}: {flag} must be true or false")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise PolicyError(f"{POLICY_FILE}: `steps` must be a list (it may be empty)")
    steps: list[StepRule] = []
    for i, row in enumerate(raw_steps, start=1):
        where = f"{POLICY_FILE}: step #{i}"
        if not isinstance(row, dict):
            raise PolicyError(f"{where} must be a mapping with name, over and roles")
        name = str(row.get("name", "")).strip()
        if not _STEP_NAME.match(name):
            raise PolicyError(f"{where}: name must be 1-12 lowercase letters, digits or _, "
                              f"got {name!r}")
        if any(s.name == name for s in steps):
            raise PolicyError(f"{where}: step {name!r} appears twice")
        over = row.get("over")
        if not isinstance(over, str):
            raise PolicyError(f"{where} ({name}): `over` must be a dollar amount written as a "
                              f'string, e.g. "1000.00"')
        try:
            over_cents = parse_amount(over)
        except MoneyError as exc:
            raise PolicyError(f"{where} ({name}): {exc}") from None
        if over_cents < 0:
            raise PolicyError(f"{where} ({name}): `over` must not be negative")
        if steps and over_cents <= steps[-1].over_cents:
            raise PolicyError(f"{where} ({name}): thresholds must increase from step to step "
                              f"({over} is not above {format_cents(steps[-1].over_cents)})")
        roles_raw = row.get("roles")
        if not isinstance(roles_raw, list) or not roles_raw:
            raise PolicyError(f"{where} ({name}): `roles` must be a non-empty list")
        try:
            roles = frozenset(Role(str(r)) for r in roles_raw)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise PolicyError(f"{where} ({name}): unknown role in {roles_raw} "
                              f"(known: {known})") from None
        label = str(row.get("label") or name.upper()).strip()
        steps.append(StepRule(name, label, over_cents, roles))
    return ApprovalPolicy(tuple(steps), flags["admin_may_decide"], flags["location_scoped"])


def policy_of(services: Services) -> ApprovalPolicy:
    """The policy from the configured knowledge directory."""
    return load_policy(services.settings.knowledge_path)


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class BillDraft:
    """A new bill as entered from the CLI, an import or a vendor invoice sent to the bot."""

    vendor: str
    amount_cents: int  # the bill total, tax included
    number: str
    bill_date: date
    due_date: date | None = None
    account_code: str | None = None  # default: the vendor's default account
    location: str | None = None  # location code; default: the creator's, or the only one
    memo: str | None = None
    tax_cents: int = 0
    source: str = "manual"  # manual / cli / import / slack (kept in the audit row)


@dataclass(frozen=True)
class ApprovalView:
    step: str
    decision: str  # approved / rejected
    decided_by: str
    on_behalf_of: str | None
    reason: str | None
    decided_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "decision": self.decision, "decided_by": self.decided_by,
                "on_behalf_of": self.on_behalf_of, "reason": self.reason,
                "decided_at": self.decided_at.isoformat()}


@dataclass(frozen=True)
class BillView:
    id: int
    vendor: str
    vendor_id: int
    number: str
    location: str
    location_id: int
    bill_date: date
    due_date: date | None
    amount_cents: int
    tax_cents: int
    account_code: str
    memo: str | None
    status: str
    required_steps: tuple[str, ...]
    approvals: tuple[ApprovalView, ...]
    payment_method: str | None
    paid_on: date | None
    journal_entry_id: int | None
    payment_journal_entry_id: int | None
    created_by: str | None
    created_at: datetime
    slack_channel: str | None
    slack_ts: str | None

    @property
    def next_step(self) -> str | None:
        """The step waiting for a decision (None unless the bill is pending)."""
        if self.status != BillStatus.PENDING:
            return None
        decided = {a.step for a in self.approvals}
        return next((s for s in self.required_steps if s not in decided), None)

    @property
    def auto_approved(self) -> bool:
        return not self.required_steps and self.status != BillStatus.PENDING

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "vendor": self.vendor, "vendor_id": self.vendor_id,
            "number": self.number, "location": self.location, "location_id": self.location_id,
            "bill_date": self.bill_date.isoformat(),
            "due_date": self.due_date.isoformat() if self.due_date else None,
            "amount_cents": self.amount_cents, "amount": format_cents(self.amount_cents),
            "tax_cents": self.tax_cents, "account_code": self.account_code, "memo": self.memo,
            "status": self.status, "required_steps": list(self.required_steps),
            "next_step": self.next_step, "approvals": [a.as_dict() for a in self.approvals],
            "payment_method": self.payment_method,
            "paid_on": self.paid_on.isoformat() if self.paid_on else None,
            "journal_entry_id": self.journal_entry_id,
            "payment_journal_entry_id": self.payment_journal_entry_id,
            "created_by": self.created_by, "created_at": self.created_at.isoformat(),
            "slack_channel": self.slack_channel, "slack_ts": self.slack_ts,
        }


@dataclass(frozen=True)
class Decision:
    """What a click did. Only ``recorded`` wrote anything; the others changed nothing."""

    outcome: Outcome
    bill: BillView
    step: str | None
    message: str
    on_behalf_of: str | None = None

    @property
    def changed(self) -> bool:
        return self.outcome == "recorded"

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "step": self.step, "message": self.message,
                "on_behalf_of": self.on_behalf_of, "bill": self.bill.as_dict()}


@dataclass(frozen=True)
class DelegationView:
    id: int
    approver_user_id: str
    delegate_user_id: str
    starts_on: date
    ends_on: date

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "approver_user_id": self.approver_user_id,
                "delegate_user_id": self.delegate_user_id,
                "starts_on": self.starts_on.isoformat(), "ends_on": self.ends_on.isoformat()}


# --------------------------------------------------------------------------- helpers


def normalize_vendor_name(name: str) -> str:
    """The dedupe key of a vendor: lower case, punctuation dropped, spaces collapsed."""
    return " ".join(re.sub(r"[^a-z0-9& ]+", " ", name.lower()).split())


def _begin_write(session: Session) -> None:
    """Take the database write lock now on SQLite, so concurrent writers queue up here.

    On PostgreSQL this is a no-op: callers lock the bill row with ``SELECT ... FOR UPDATE``.
    """
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        raw: Any = conn.connection.dbapi_connection
        if not raw.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _lock_bill(session: Session, bill_id: int) -> Bill:
    _begin_write(session)
    bill = session.execute(
        select(Bill).where(Bill.id == bill_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if bill is None:
        raise BillNotFound(f"there is no bill #{bill_id}")
    return bill


def _local_today(session: Session, location_id: int, now: datetime) -> date:
    loc = session.get(Location, location_id)
    return now.astimezone(ZoneInfo(loc.timezone if loc else "UTC")).date()


def _approvals_of(session: Session, bill_ids: Sequence[int]) -> dict[int, list[Approval]]:
    out: dict[int, list[Approval]] = defaultdict(list)
    for chunk in chunks(sorted(set(bill_ids)), 1000):
        rows = session.execute(
            select(Approval).where(Approval.subject_type == SUBJECT,
                                   Approval.subject_id.in_(chunk))  # type: ignore[attr-defined]
            .order_by(Approval.id)
        ).scalars()
        for row in rows:
            out[row.subject_id].append(row)
    return out


def _views(session: Session, bills: Sequence[Bill]) -> list[BillView]:
    if not bills:
        return []
    approvals = _approvals_of(session, [b.id for b in bills if b.id is not None])
    vendor_ids = sorted({b.vendor_id for b in bills})
    vendors: dict[int, str] = {}
    for chunk in chunks(vendor_ids, 1000):
        vendors.update((int(i), str(n)) for i, n in session.execute(
            select(Vendor.id, Vendor.name).where(Vendor.id.in_(chunk))  # type: ignore[union-attr]
        ).all())
    locations = {int(i): str(c) for i, c in session.execute(select(Location.id, Location.code))}
    views = []
    for b in bills:
        assert b.id is not None
        views.append(BillView(
            id=b.id, vendor=vendors.get(b.vendor_id, "?"), vendor_id=b.vendor_id,
            number=b.number, location=locations.get(b.location_id, "?"),
            location_id=b.location_id, bill_date=b.bill_date, due_date=b.due_date,
            amount_cents=b.amount_cents, tax_cents=b.tax_cents, account_code=b.account_code,
            memo=b.memo, status=b.status, required_steps=tuple(b.required_steps or ()),
            approvals=tuple(
                ApprovalView(a.step, a.decision, a.decided_by, a.on_behalf_of, a.reason,
                             a.decided_at)
                for a in approvals.get(b.id, [])
            ),
            payment_method=b.payment_method, paid_on=b.paid_on,
            journal_entry_id=b.journal_entry_id,
            payment_journal_entry_id=b.payment_journal_entry_id, created_by=b.created_by,
            created_at=b.created_at, slack_channel=b.slack_channel, slack_ts=b.slack_ts,
        ))
    return views


def _view(session: Session, bill: Bill) -> BillView:
    return _views(session, [bill])[0]


def _bill_team(session: Session, bill: Bill) -> str | None:
    """The Slack workspace a bill belongs to: its creator's (None when entered by the
    operator, an import, or a user id known in several workspaces)."""
    if not bill.created_by or bill.created_by.startswith("system:"):
        return None
    teams = set(session.execute(select(SlackUser.team_id).where(
        SlackUser.user_id == bill.created_by)).scalars())
    return teams.pop() if len(teams) == 1 else None


def _when(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- entering bills


def _check_draft(draft: BillDraft) -> tuple[str, str]:
    """Validate a draft before touching the store; returns (vendor name, bill number)."""
    vendor = (draft.vendor or "").strip()
    if not normalize_vendor_name(vendor):
        raise BillError("a bill needs a vendor name")
    if len(vendor) > 200:
        raise BillError("the vendor name is too long (at most 200 characters)")
    number = (draft.number or "").strip()
    if not number:
        raise BillError("a bill needs the vendor's bill (invoice) number")
    if len(number) > 60:
        raise BillError("the bill number is too long (at most 60 characters)")
    for name, value in (("amount", draft.amount_cents), ("tax", draft.tax_cents)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BillError(f"the {name} must be integer cents, got {type(value).__name__}")
    if draft.amount_cents <= 0:
        raise BillError("a bill amount must be more than zero (enter a vendor credit "
                        "as a credit, not as a negative bill)")
    if not 0 <= draft.tax_cents <= draft.amount_cents:
        raise BillError("the tax must be between zero and the bill total")
    if not isinstance(draft.bill_date, date):
        raise BillError("the bill date must be a date")
    if draft.due_date is not None and draft.due_date < draft.bill_date:
        raise BillError(f"the due date {draft.due_date} is before the bill date "
                        f"{draft.bill_date}")
    if draft.memo is not None and len(draft.memo) > 500:
        raise BillError("the memo is too long (at most 500 characters)")
    return vendor, number


def _resolve_location(session: Session, actor: Actor, code: str | None) -> Location:
    locations = list(session.execute(select(Location).order_by(Location.code)).scalars())
    if code is not None:
        wanted = code.strip().upper()
        for loc in locations:
            if loc.code.upper() == wanted:
                return loc
        known = ", ".join(loc.code for loc in locations) or "none yet"
        raise BillError(f"unknown location {code!r} (known: {known})")
    if not actor.is_system and actor.team_id is not None:
        home = session.execute(
            select(SlackUser.location_id).where(SlackUser.team_id == actor.team_id,
                                                SlackUser.user_id == actor.user_id)
        ).scalar_one_or_none()
        for loc in locations:
            if home is not None and loc.id == home:
                return loc
    if len(locations) == 1:
        return locations[0]
    if not locations:
        raise BillError("there are no locations yet; create one before entering bills")
    known = ", ".join(loc.code for loc in locations)
    raise BillError(f"say which location the bill is for (one of {known})")


def _find_or_create_vendor(session: Session, name: str, actor: Actor) -> Vendor:
    key = normalize_vendor_name(name)
    found = session.execute(select(Vendor).where(Vendor.normalized_name == key)).scalar_one_or_none()
    if found is not None:
        return found
    vendor = Vendor(name=name, normalized_name=key)
    try:
        with session.begin_nested():
            session.add(vendor)
    except IntegrityError:  # created concurrently: use that one
        return session.execute(select(Vendor).where(Vendor.normalized_name == key)).scalar_one()
    audit.record(session, actor=actor.label, action="vendor.create", entity_type="vendor",
                 entity_id=vendor.id, details={"name": name})
    return vendor


def _check_account(session: Session, code: str) -> str:
    code = code.strip()
    acct = session.execute(select(Account).where(Account.code == code)).scalar_one_or_none()
    if acct is None:
        raise BillError(f"unknown account {code!r}; use an expense account from the chart "
                        "(e.g. 5400 Repairs & Maintenance) or a CapEx account")
    if not acct.active:
        raise BillError(f"account {code} {acct.name} is inactive")
    if acct.type != AccountType.EXPENSE and code not in NON_EXPENSE_BILL_ACCOUNTS:
        raise BillError(f"a bill cannot be coded to {code} {acct.name} ({acct.type}); use an "
                        "expense account, prepaid expenses (1200) or a CapEx account "
                        "(1500, 1510, 1520)")
    return code


def create_bill(services: Services, actor: Actor, draft: BillDraft) -> BillView:
    """Enter a vendor bill and route it by amount; at or under the first threshold it is
    auto-approved and posted to Accounts Payable at once.

    Staff and up (staff, manager, gm, cfo; admin) may enter bills. A vendor is found by its
    normalized name or created. The same vendor bill number twice is refused.
    """
    vendor_name, number = _check_draft(draft)
    policy = policy_of(services)
    with services.session() as session:
        _begin_write(session)
        require_role(session, actor, CREATORS, "enter bills")
        loc = _resolve_location(session, actor, draft.location)
        vendor = _find_or_create_vendor(session, vendor_name, actor)
        account = draft.account_code or vendor.default_account_code
        if not account:
            raise BillError(f"say which account the bill is for: {vendor.name} has no default "
                            "account (e.g. 5400 Repairs & Maintenance)")
        account = _check_account(session, account)
        taken = session.execute(
            select(Bill.id, Bill.status).where(Bill.vendor_id == vendor.id, Bill.number == number)
        ).first()
        if taken is not None:
            raise DuplicateBill(f"{vendor.name} bill {number} is already entered "
                                f"(bill #{taken[0]}, {taken[1]})")
        steps = policy.route(draft.amount_cents)
        bill = Bill(
            vendor_id=vendor.id, location_id=loc.id, number=number, bill_date=draft.bill_date,
            due_date=draft.due_date, amount_cents=draft.amount_cents, tax_cents=draft.tax_cents,
            account_code=account, memo=(draft.memo or "").strip() or None,
            status=BillStatus.PENDING, required_steps=steps, created_by=actor.label[:40],
            created_at=services.clock(),
        )
        try:
            with session.begin_nested():
                session.add(bill)
        except IntegrityError:  # entered concurrently
            raise DuplicateBill(f"{vendor.name} bill {number} is already entered") from None
        audit.record(session, actor=actor.label, action="bill.create", entity_type="bill",
                     entity_id=bill.id, details={
                         "vendor": vendor.name, "number": number,
                         "amount_cents": draft.amount_cents, "account": account,
                         "location": loc.code, "required_steps": steps, "source": draft.source})
        if not steps:
            limit = policy.auto_approve_max_cents
            reason = (f"auto-approved under {format_cents(limit)}" if limit is not None
                      else "auto-approved (the approval policy has no steps)")
            _post_approved(session, bill, vendor, actor.label,
                           _local_today(session, loc.id, services.clock()))  # type: ignore[arg-type]
            audit.record(session, actor=actor.label, action="bill.auto_approve",
                         entity_type="bill", entity_id=bill.id,
                         details={"reason": reason, "threshold_cents": limit,
                                  "journal_entry_id": bill.journal_entry_id})
        session.flush()
        return _view(session, bill)


def _post_approved(session: Session, bill: Bill, vendor: Vendor, actor: str, today: date) -> None:
    """Mark the bill approved and post it to AP (once: the idempotency key is per bill).

    The entry is dated the bill date; if that period is locked, today (location time)."""
    on = bill.bill_date if not ledger.is_locked(session, bill.bill_date) else today
    legs = [Leg(bill.account_code, bill.amount_cents, bill.location_id, vendor_id=vendor.id,
                memo=f"Bill {bill.number}"),
            Leg(AP_ACCOUNT, -bill.amount_cents, bill.location_id, vendor_id=vendor.id,
                memo=f"Bill {bill.number}")]
    entry = ledger.post_entry(session, EntryDraft(
        on, f"Bill {bill.number} — {vendor.name}", legs, source_type="bill", source_id=bill.id,
        idempotency_key=f"bill:{bill.id}"), actor=actor)
    bill.status = BillStatus.APPROVED
    bill.journal_entry_id = entry.id
    session.add(bill)
    session.flush()


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class _Authority:
    allowed: bool
    on_behalf_of: str | None = None


def _authority(
    session: Session, actor: Actor, role: Role, policy: ApprovalPolicy, step: str,
    today: date, exclude: set[str], location_id: int,
) -> _Authority:
    """May ``actor`` decide ``step`` of a bill at ``location_id`` today: by their own role, as
    admin, or as a delegate?

    ``exclude`` names people whose authority may not be used (the creator and anyone who
    already decided a step of this bill). With ``location_scoped``, a role holder with a home
    location decides only that location's bills."""
    rule = policy.rule(step)
    if role == Role.ADMIN and policy.admin_may_decide:
        return _Authority(True)
    if actor.is_system or actor.team_id is None:
        return _Authority(False)
    if role in rule.roles:
        home = session.execute(select(SlackUser.location_id).where(
            SlackUser.team_id == actor.team_id, SlackUser.user_id == actor.user_id)
        ).scalar_one_or_none()
        if not policy.location_scoped or home is None or home == location_id:
            return _Authority(True)
    stmt = (
        select(Delegation.approver_user_id)
        .join(SlackUser, SlackUser.user_id == Delegation.approver_user_id)
        .where(Delegation.delegate_user_id == actor.user_id,
               Delegation.starts_on <= today, Delegation.ends_on >= today,
               SlackUser.team_id == actor.team_id, SlackUser.active.is_(True),  # type: ignore[attr-defined]
               SlackUser.role.in_([r.value for r in rule.roles]))  # type: ignore[attr-defined]
        .order_by(Delegation.approver_user_id)
    )
    if policy.location_scoped:
        stmt = stmt.where(or_(SlackUser.location_id.is_(None),  # type: ignore[union-attr]
                              SlackUser.location_id == location_id))
    approvers = session.execute(stmt).scalars().all()
    for approver in approvers:
        if approver not in exclude and approver != actor.user_id:
            return _Authority(True, approver)
    return _Authority(False)


def _said(a: Approval, policy: ApprovalPolicy) -> str:
    who = f"<@{a.decided_by}>" if not a.decided_by.startswith("system:") else a.decided_by
    if a.on_behalf_of:
        who += f" on behalf of <@{a.on_behalf_of}>"
    return (f"the {policy.label(a.step)} step was already {a.decision} by {who} "
            f"at {_when(a.decided_at)}")


def decide(
    services: Services,
    actor: Actor,
    bill_id: int,
    decision: DecisionKind,
    reason: str | None = None,
    *,
    step: str | None = None,
    now: datetime | None = None,
) -> Decision:
    """Approve or reject the step a bill is waiting on, for a click on its message.

    The bill is reloaded under a lock and the clicker's role re-read from the store every
    time. ``step`` is the step the clicked message was for (optional): a click on a step that
    is already decided, or a repeat by someone who already decided, returns
    ``already_decided`` and writes nothing. Unknown, inactive or other-workspace users get
    ``NotAuthorized``; a rejection without a reason gets ``BillError``.
    """
    if decision not in ("approve", "reject"):
        raise BillError(f"decision must be approve or reject, got {decision!r}")
    text = (reason or "").strip() or None
    if decision == "reject" and text is None:
        raise BillError("a rejection needs a reason (say what is wrong with the bill)")
    if text is not None and len(text) > 500:
        raise BillError("the reason is too long (at most 500 characters)")
    policy = policy_of(services)
    moment = now or services.clock()
    with services.session() as session:
        bill = _lock_bill(session, bill_id)
        role = role_of(session, actor)
        if role is None:
            raise NotAuthorized("you are not a known deskbooks user here, so you cannot "
                                "decide bills")
        team = _bill_team(session, bill)
        if team is not None and not actor.is_system and actor.team_id != team:
            raise NotAuthorized("this bill belongs to another Slack workspace")
        if step is not None and step not in (bill.required_steps or []):
            raise BillError(f"bill #{bill_id} has no {step!r} step "
                            f"(its steps: {', '.join(bill.required_steps) or 'none'})")
        approvals = _approvals_of(session, [bill_id]).get(bill_id, [])
        decided = {a.step: a for a in approvals}
        involved = {p for a in approvals for p in (a.decided_by, a.on_behalf_of) if p}
        today = _local_today(session, bill.location_id, moment)

        def result(outcome: Outcome, message: str, at: str | None,
                   on_behalf_of: str | None = None) -> Decision:
            return Decision(outcome, _view(session, bill), at, message, on_behalf_of)

        def repeat_of_mine() -> Approval | None:
            """A decided step this click could have been meant for."""
            for a in approvals:
                if actor.label in (a.decided_by, a.on_behalf_of):
                    return a
                if _authority(session, actor, role, policy, a.step, today, set(),
                              bill.location_id).allowed:
                    return a
            return None

        if step is not None and step in decided:
            return result("already_decided", _said(decided[step], policy), step)
        if step is None and actor.label in involved:
            previous = next(a for a in approvals if actor.label in (a.decided_by,
                                                                    a.on_behalf_of))
            return result("already_decided", _said(previous, policy), previous.step)
        if bill.status != BillStatus.PENDING:
            earlier = repeat_of_mine() if step is None else None
            if earlier is not None:
                return result("already_decided", _said(earlier, policy), earlier.step)
            how = "auto-approved" if not bill.required_steps and bill.status in (
                BillStatus.APPROVED, BillStatus.PAID) else bill.status
            return result("not_pending", f"bill #{bill_id} is {how}; there is nothing to "
                          "decide", None)
        current = next((s for s in bill.required_steps if s not in decided), None)
        if current is None:  # only a bill written around this service can look like this
            raise BillError(f"bill #{bill_id} is pending but has no step left to decide; "
                            "an admin must correct it")
        if step is not None and step != current:
            return result("not_your_step", f"bill #{bill_id} is waiting on the "
                          f"{policy.label(current)} step first", current)
        if bill.created_by is not None and bill.created_by == actor.label:
            return result("not_your_step", "you entered this bill, so someone else must "
                          "decide it", current)
        exclude = involved | ({bill.created_by} if bill.created_by else set())
        auth = _authority(session, actor, role, policy, current, today, exclude,
                          bill.location_id)
        if not auth.allowed:
            earlier = repeat_of_mine() if step is None else None
            if earlier is not None:
                return result("already_decided", _said(earlier, policy), earlier.step)
            rule = policy.rule(current)
            if role in rule.roles:  # right role, other location (location_scoped)
                return result("not_your_step", f"bill #{bill_id} is for another location "
                              f"than yours; a {rule.label} of that location decides it",
                              current)
            roles = " or ".join(sorted(r.value for r in rule.roles))
            return result("not_your_step", f"bill #{bill_id} is waiting on the {rule.label} "
                          f"step, which needs a {roles} (you are {role.value})", current)
        approval = Approval(
            subject_type=SUBJECT, subject_id=bill_id, step=current,
            decision="approved" if decision == "approve" else "rejected",
            decided_by=actor.label[:40], on_behalf_of=auth.on_behalf_of, reason=text,
            decided_at=moment,
        )
        try:
            with session.begin_nested():
                session.add(approval)
        except IntegrityError:  # decided concurrently (the lock makes this a last resort)
            session.expire_all()
            winner = session.execute(select(Approval).where(
                Approval.subject_type == SUBJECT, Approval.subject_id == bill_id,
                Approval.step == current)).scalar_one()
            return result("already_decided", _said(winner, policy), current)
        vendor = session.get(Vendor, bill.vendor_id)
        assert vendor is not None
        label = policy.label(current)
        if decision == "reject":
            bill.status = BillStatus.REJECTED
            message = f"rejected at the {label} step: {text}"
        elif len(decided) + 1 == len(bill.required_steps):
            _post_approved(session, bill, vendor, actor.label, today)
            message = f"approved at the {label} step; the bill is approved and posted to AP"
        else:
            following = bill.required_steps[len(decided) + 1]
            message = (f"approved at the {label} step; now waiting on the "
                       f"{policy.label(following)} step")
        session.add(bill)
        audit.record(session, actor=actor.label, action=f"bill.{decision}",
                     entity_type="bill", entity_id=bill_id, details={
                         "step": current, "on_behalf_of": auth.on_behalf_of, "reason": text,
                         "status": bill.status, "journal_entry_id": bill.journal_entry_id})
        session.flush()
        who = "" if auth.on_behalf_of is None else f" (on behalf of <@{auth.on_behalf_of}>)"
        return result("recorded", f"Bill #{bill_id} {message}{who}", current,
                      auth.on_behalf_of)


# --------------------------------------------------------------------------- paying


def pay_bill(
    services: Services,
    actor: Actor,
    bill_id: int,
    method: str,
    *,
    paid_on: date | None = None,
    now: datetime | None = None,
) -> BillView:
    """Pay an approved bill: debit 2000 AP, credit 1000 cash (check/ACH/cash) or 2500 card.

    Managers, GMs and the CFO (and admins) may record payments. A bill is paid once.
    """
    try:
        how = PaymentMethod(method)
    except ValueError:
        known = ", ".join(m.value for m in PaymentMethod)
        raise BillError(f"payment method must be one of {known}, got {method!r}") from None
    with services.session() as session:
        bill = _lock_bill(session, bill_id)
        require_role(session, actor, PAYERS, "pay bills")
        if bill.status == BillStatus.PAID:
            raise BillError(f"bill #{bill_id} was already paid on {bill.paid_on} "
                            f"({bill.payment_method})")
        if bill.status != BillStatus.APPROVED:
            raise BillError(f"bill #{bill_id} is {bill.status}; only approved bills are paid")
        vendor = session.get(Vendor, bill.vendor_id)
        assert vendor is not None
        today = _local_today(session, bill.location_id, now or services.clock())
        if bill.journal_entry_id is None:  # approved outside this service: post AP first
            _post_approved(session, bill, vendor, actor.label, today)
        on = paid_on or today
        legs = [Leg(AP_ACCOUNT, bill.amount_cents, bill.location_id, vendor_id=vendor.id,
                    memo=f"Bill {bill.number}"),
                Leg(PAYMENT_ACCOUNT[how], -bill.amount_cents, bill.location_id,
                    vendor_id=vendor.id, memo=f"Bill {bill.number}")]
        entry = ledger.post_entry(session, EntryDraft(
            on, f"Pay bill {bill.number} ({how.value}) — {vendor.name}", legs,
            source_type="bill_payment", source_id=bill.id,
            idempotency_key=f"bill_payment:{bill.id}"), actor=actor.label)
        bill.status = BillStatus.PAID
        bill.payment_method = how.value
        bill.paid_on = on
        bill.payment_journal_entry_id = entry.id
        session.add(bill)
        audit.record(session, actor=actor.label, action="bill.pay", entity_type="bill",
                     entity_id=bill_id, details={"method": how.value, "paid_on": on.isoformat(),
                                                 "amount_cents": bill.amount_cents,
                                                 "journal_entry_id": entry.id})
        session.flush()
        return _view(session, bill)


# --------------------------------------------------------------------------- delegation


def set_delegation(
    services: Services, actor: Actor, delegate_user_id: str, starts_on: date, ends_on: date,
) -> DelegationView:
    """A GM or CFO names a delegate for their approvals from ``starts_on`` to ``ends_on``
    (inclusive, dates in each bill's location time zone). Only their own authority."""
    delegate_user_id = (delegate_user_id or "").strip()
    if not delegate_user_id:
        raise BillError("name the delegate's Slack user id")
    if ends_on < starts_on:
        raise BillError(f"the delegation ends ({ends_on}) before it starts ({starts_on})")
    with services.session() as session:
        _begin_write(session)
        role = role_of(session, actor)
        if role is None:
            raise NotAuthorized("you are not a known deskbooks user here, so you cannot "
                                "delegate approvals")
        if actor.is_system or role not in DELEGATORS:
            raise NotAuthorized(f"only a GM or the CFO can delegate their approvals "
                                f"(you are {role.value})")
        if delegate_user_id == actor.user_id:
            raise BillError("you cannot delegate approvals to yourself")
        delegate = session.execute(select(SlackUser).where(
            SlackUser.team_id == actor.team_id, SlackUser.user_id == delegate_user_id
        )).scalar_one_or_none()
        if delegate is None or not delegate.active:
            raise BillError(f"{delegate_user_id} is not an active deskbooks user in your "
                            "workspace")
        if ends_on < services.today():
            raise BillError(f"the delegation would already have ended ({ends_on})")
        row = Delegation(approver_user_id=actor.user_id, delegate_user_id=delegate_user_id,
                         starts_on=starts_on, ends_on=ends_on, created_at=services.clock())
        session.add(row)
        session.flush()
        audit.record(session, actor=actor.label, action="approval.delegate",
                     entity_type="delegation", entity_id=row.id, details={
                         "delegate": delegate_user_id, "role": role.value,
                         "starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat()})
        assert row.id is not None
        return DelegationView(row.id, row.approver_user_id, row.delegate_user_id,
                              row.starts_on, row.ends_on)


# --------------------------------------------------------------------------- Slack message


def record_message(services: Services, bill_id: int, channel: str, ts: str) -> BillView:
    """Remember the Slack message that shows this bill, so decisions can update it."""
    channel, ts = (channel or "").strip(), (ts or "").strip()
    if not channel or not ts or len(channel) > 40 or len(ts) > 40:
        raise BillError("a Slack message needs a channel id and a timestamp (max 40 chars)")
    with services.session() as session:
        bill = _lock_bill(session, bill_id)
        bill.slack_channel, bill.slack_ts = channel, ts
        session.add(bill)
        audit.record(session, actor="system:slack", action="bill.message", entity_type="bill",
                     entity_id=bill_id, details={"channel": channel, "ts": ts})
        session.flush()
        return _view(session, bill)


# --------------------------------------------------------------------------- queries


def get_bill(session: Session, bill_id: int) -> BillView:
    bill = session.get(Bill, bill_id)
    if bill is None:
        raise BillNotFound(f"there is no bill #{bill_id}")
    return _view(session, bill)


def list_bills(
    session: Session, status: str | None = None, location: str | None = None,
) -> list[BillView]:
    """Bills by bill date, optionally one status (pending/approved/rejected/paid) and one
    location code."""
    stmt = select(Bill).order_by(Bill.bill_date, Bill.id)
    if status is not None:
        try:
            stmt = stmt.where(Bill.status == BillStatus(status).value)
        except ValueError:
            known = ", ".join(s.value for s in BillStatus)
            raise BillError(f"status must be one of {known}, got {status!r}") from None
    if location is not None:
        loc_id = session.execute(select(Location.id).where(
            Location.code == location.strip().upper())).scalar_one_or_none()
        if loc_id is None:
            raise BillError(f"unknown location {location!r}")
        stmt = stmt.where(Bill.location_id == loc_id)
    return _views(session, list(session.execute(stmt).scalars()))


def _pending_with_steps(session: Session) -> list[tuple[Bill, str, list[Approval]]]:
    bills = list(session.execute(select(Bill).where(Bill.status == BillStatus.PENDING)
                                 .order_by(Bill.bill_date, Bill.id)).scalars())
    approvals = _approvals_of(session, [b.id for b in bills if b.id is not None])
    out = []
    for b in bills:
        done = {a.step for a in approvals.get(b.id or 0, [])}
        current = next((s for s in b.required_steps or [] if s not in done), None)
        if current is not None:
            out.append((b, current, approvals.get(b.id or 0, [])))
    return out


def pending_for(
    session: Session, actor: Actor, *, now: datetime | None = None,
    policy: ApprovalPolicy | None = None,
) -> list[BillView]:
    """Bills waiting on a step this user may decide now (own role, admin, or delegation).

    Bills they entered or already decided a step of are left out. ``policy`` defaults to
    the shipped knowledge directory's; pass ``policy_of(services)`` for a custom one."""
    role = role_of(session, actor)
    if role is None:
        return []
    policy = policy or load_policy(default_knowledge_dir())
    moment = now or utcnow()
    zones = {int(i): str(z) for i, z in session.execute(select(Location.id, Location.timezone))}
    mine = []
    for bill, current, approvals in _pending_with_steps(session):
        involved = {p for a in approvals for p in (a.decided_by, a.on_behalf_of) if p}
        if actor.label in involved or bill.created_by == actor.label:
            continue
        team = _bill_team(session, bill)
        if team is not None and not actor.is_system and actor.team_id != team:
            continue
        today = moment.astimezone(ZoneInfo(zones.get(bill.location_id, "UTC"))).date()
        exclude = involved | ({bill.created_by} if bill.created_by else set())
        if _authority(session, actor, role, policy, current, today, exclude,
                      bill.location_id).allowed:
            mine.append(bill)
    return _views(session, mine)


def approvers_for(
    session: Session, bill: BillView | Bill | int, *, team_id: str | None = None,
    now: datetime | None = None, policy: ApprovalPolicy | None = None,
) -> list[str]:
    """Slack user ids to notify for the step a bill is waiting on: active users holding a
    role of that step in the bill's workspace (``team_id``, default: the creator's), plus
    their active delegates; never the bill's creator nor anyone who already decided a step.
    Empty when the bill is not pending."""
    bill_id = bill if isinstance(bill, int) else bill.id
    assert bill_id is not None
    row = session.get(Bill, bill_id)
    if row is None:
        raise BillNotFound(f"there is no bill #{bill_id}")
    view = _view(session, row)
    current = view.next_step
    if current is None:
        return []
    policy = policy or load_policy(default_knowledge_dir())
    rule = policy.rule(current)
    today = _local_today(session, row.location_id, now or utcnow())
    exclude = {p for a in view.approvals for p in (a.decided_by, a.on_behalf_of) if p}
    if row.created_by:
        exclude.add(row.created_by)
    team = team_id or _bill_team(session, row)
    stmt = (select(SlackUser.team_id, SlackUser.user_id)
            .where(SlackUser.active.is_(True),  # type: ignore[attr-defined]
                   SlackUser.role.in_([r.value for r in rule.roles]))  # type: ignore[attr-defined]
            .order_by(SlackUser.user_id))
    if team is not None:
        stmt = stmt.where(SlackUser.team_id == team)
    if policy.location_scoped:
        stmt = stmt.where(or_(SlackUser.location_id.is_(None),  # type: ignore[union-attr]
                              SlackUser.location_id == row.location_id))
    holders = session.execute(stmt).all()
    ids = [u for _, u in holders if u not in exclude]
    delegates = session.execute(
        select(Delegation.delegate_user_id, Delegation.approver_user_id)
        .where(Delegation.approver_user_id.in_(ids),  # type: ignore[attr-defined]
               Delegation.starts_on <= today, Delegation.ends_on >= today)
        .order_by(Delegation.delegate_user_id)
    ).all() if ids else []
    teams = {u: t for t, u in holders}
    for delegate, approver in delegates:
        active = session.execute(select(SlackUser.id).where(
            SlackUser.team_id == teams[approver], SlackUser.user_id == delegate,
            SlackUser.active.is_(True))).first()  # type: ignore[attr-defined]
        if active is not None and delegate not in exclude and delegate not in ids:
            ids.append(delegate)
    return ids


def delegations_active(session: Session, on: date) -> list[DelegationView]:
    """Delegations in force on a date (for the App Home and the CLI)."""
    rows = session.execute(select(Delegation).where(
        Delegation.starts_on <= on, Delegation.ends_on >= on).order_by(Delegation.id)).scalars()
    return [DelegationView(r.id, r.approver_user_id, r.delegate_user_id, r.starts_on,
                           r.ends_on) for r in rows if r.id is not None]
