"""The SQL store for the whole domain (SQLModel tables).

Conventions: money columns end in ``_cents`` and hold integer minor units (BIGINT); timestamps
are aware UTC (``UTCDateTime``); calendar dates (service periods, entry dates) are plain dates
read in the location's time zone; rates are integer parts per million (8.875 % = 88_750 ppm);
categorical columns hold the string values of the ``StrEnum`` classes below and are validated
by the services that write them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from finance.types import UTCDateTime, utcnow


def _money(**kw: Any) -> Any:
    return Field(default=0, sa_type=BigInteger, **kw)


def _ts(**kw: Any) -> Any:
    # the column default also covers bulk Core inserts, which skip pydantic defaults
    return Field(
        default_factory=utcnow, sa_type=UTCDateTime, sa_column_kwargs={"default": utcnow}, **kw
    )


def _ts_opt(**kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, **kw)


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --------------------------------------------------------------------------- vocabularies


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"


class MemberKind(StrEnum):
    COMPANY = "company"
    PERSON = "person"


class DeskType(StrEnum):
    HOT_DESK = "hot_desk"
    DEDICATED_DESK = "dedicated_desk"
    PRIVATE_OFFICE = "private_office"
    VIRTUAL_OFFICE = "virtual_office"


class ResourceKind(StrEnum):
    DESK = "desk"
    OFFICE = "office"
    MEETING_ROOM = "meeting_room"
    LOCKER = "locker"


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


class LineKind(StrEnum):
    """Invoice line kinds; each maps to a revenue account and a sales-tax category."""

    MEMBERSHIP = "membership"
    PRORATION = "proration"
    MEETING_ROOM = "meeting_room"
    VIRTUAL_OFFICE = "virtual_office"
    EVENT = "event"
    LOCKER = "locker"
    FOOD_BEVERAGE = "food_beverage"
    PRINTING = "printing"
    DAY_PASS = "day_pass"
    DEPOSIT = "deposit"
    DISCOUNT = "discount"


class UsageKind(StrEnum):
    PRINT = "print"
    COFFEE = "coffee"
    DOOR_ACCESS = "door_access"
    DAY_PASS = "day_pass"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    OPEN = "open"  # issued, not fully paid
    PAID = "paid"
    VOID = "void"


class PaymentMethod(StrEnum):
    CARD = "card"
    CASH = "cash"
    CHECK = "check"
    ACH = "ach"


class ExpenseStatus(StrEnum):
    DRAFT = "draft"  # scanned, awaiting a person's confirmation
    POSTED = "posted"
    DISCARDED = "discarded"


class BillStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"


class Role(StrEnum):
    STAFF = "staff"
    MANAGER = "manager"
    GM = "gm"
    CFO = "cfo"
    ADMIN = "admin"


class AnomalyStatus(StrEnum):
    OPEN = "open"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# --------------------------------------------------------------------------- space


class Location(SQLModel, table=True):
    __tablename__ = "location"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=120)
    timezone: str = Field(max_length=64)
    currency: str = Field(default="USD", max_length=3)
    address: str | None = Field(default=None, max_length=255)
    created_at: datetime = _ts()


class Resource(SQLModel, table=True):
    """A bookable or assignable unit: a desk, an office, a meeting room, a locker."""

    __tablename__ = "resource"
    __table_args__ = (UniqueConstraint("location_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    location_id: int = Field(foreign_key="location.id", index=True)
    kind: str = Field(max_length=20)
    desk_type: str | None = Field(default=None, max_length=20)
    name: str = Field(max_length=80)
    capacity: int = Field(default=1, ge=1)
    hourly_rate_cents: int = _money()
    active: bool = True


class Plan(SQLModel, table=True):
    __tablename__ = "plan"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=120)
    desk_type: str = Field(max_length=20)
    location_id: int | None = Field(default=None, foreign_key="location.id", index=True)
    price_cents: int = _money()
    interval: str = Field(default=Interval.MONTH, max_length=8)
    currency: str = Field(default="USD", max_length=3)
    deposit_cents: int = _money()
    included_meeting_minutes: int = 0
    active: bool = True


# --------------------------------------------------------------------------- members


class Member(SQLModel, table=True):
    """A company or a person. ``code`` is the stable id users and imports refer to."""

    __tablename__ = "member"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)
    kind: str = Field(max_length=10)
    name: str = Field(max_length=200, index=True)
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    tax_id: str | None = Field(default=None, max_length=40)
    company_id: int | None = Field(default=None, foreign_key="member.id")
    home_location_id: int | None = Field(default=None, foreign_key="location.id")
    external_ref: str | None = Field(default=None, max_length=80)
    joined_on: date | None = None
    created_at: datetime = _ts()


class Subscription(SQLModel, table=True):
    """A member on a plan. ``end_date`` is the last day of service (inclusive); None = ongoing."""

    __tablename__ = "subscription"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    plan_id: int = Field(foreign_key="plan.id", index=True)
    location_id: int = Field(foreign_key="location.id", index=True)
    resource_id: int | None = Field(default=None, foreign_key="resource.id")
    quantity: int = Field(default=1, ge=1)
    unit_price_cents: int = _money()  # price agreed at signup (plans can change later)
    start_date: date
    end_date: date | None = None
    billing_anchor_day: int = Field(default=1, ge=1, le=31)
    replaces_id: int | None = Field(default=None, foreign_key="subscription.id")
    created_at: datetime = _ts()


class Booking(SQLModel, table=True):
    __tablename__ = "booking"
    __table_args__ = (Index("ix_booking_resource_start", "resource_id", "start_at"),)
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    resource_id: int = Field(foreign_key="resource.id")
    location_id: int = Field(foreign_key="location.id")
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    amount_cents: int = _money()
    status: str = Field(default="confirmed", max_length=12)  # confirmed / cancelled
    invoice_line_id: int | None = Field(default=None, foreign_key="invoice_line.id")


class UsageEvent(SQLModel, table=True):
    """Print, coffee-bar, door-access and day-pass events; unique per source + external id."""

    __tablename__ = "usage_event"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_usage_member_time", "member_id", "occurred_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=40)
    external_id: str = Field(max_length=120)
    member_id: int = Field(foreign_key="member.id")
    location_id: int = Field(foreign_key="location.id")
    kind: str = Field(max_length=16)
    quantity: int = Field(ge=0)
    unit_price_cents: int = _money()
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = _ts()
    invoice_line_id: int | None = Field(default=None, foreign_key="invoice_line.id")


# --------------------------------------------------------------------------- receivables


class BillingRun(SQLModel, table=True):
    __tablename__ = "billing_run"
    __table_args__ = (UniqueConstraint("period", "scope"),)
    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=7)  # YYYY-MM
    scope: str = Field(default="all", max_length=40)  # "all" or a location code
    status: str = Field(default="running", max_length=12)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts_opt()
    invoices_created: int = 0
    started_by: str | None = Field(default=None, max_length=40)


class Invoice(SQLModel, table=True):
    """A member invoice. ``number`` is assigned at issue and never reused or reset."""

    __tablename__ = "invoice"
    __table_args__ = (Index("ix_invoice_member_period", "member_id", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    number: str | None = Field(default=None, max_length=32, unique=True)
    idempotency_key: str | None = Field(default=None, max_length=120, unique=True)
    member_id: int = Field(foreign_key="member.id")
    location_id: int = Field(foreign_key="location.id", index=True)
    billing_run_id: int | None = Field(default=None, foreign_key="billing_run.id")
    period: str | None = Field(default=None, max_length=7, index=True)
    status: str = Field(default=InvoiceStatus.DRAFT, max_length=10, index=True)
    currency: str = Field(default="USD", max_length=3)
    issue_date: date | None = Field(default=None, index=True)
    due_date: date | None = None
    subtotal_cents: int = _money()
    tax_cents: int = _money()
    total_cents: int = _money()
    credit_applied_cents: int = _money()
    amount_paid_cents: int = _money()
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    memo: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()
    approved_by: str | None = Field(default=None, max_length=40)
    voided_at: datetime | None = _ts_opt()


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_line"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    kind: str = Field(max_length=16)
    description: str = Field(max_length=300)
    quantity: Decimal = Field(default=Decimal(1), sa_type=Numeric(12, 4))
    unit_price_cents: int = _money()
    amount_cents: int = _money()
    tax_rate_ppm: int = 0
    tax_cents: int = _money()
    account_code: str = Field(max_length=10)
    deferred_cents: int = _money()  # part posted to 2200 at issue, recognized month by month
    location_id: int = Field(foreign_key="location.id")
    service_start: date | None = None
    service_end: date | None = None  # inclusive
    subscription_id: int | None = Field(default=None, foreign_key="subscription.id")


class CreditNote(SQLModel, table=True):
    __tablename__ = "credit_note"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    member_id: int = Field(foreign_key="member.id")
    location_id: int = Field(foreign_key="location.id")
    amount_cents: int = _money()  # excluding tax
    tax_cents: int = _money()
    reason: str = Field(max_length=500)
    issue_date: date
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_by: str | None = Field(default=None, max_length=40)
    created_at: datetime = _ts()


class Payment(SQLModel, table=True):
    __tablename__ = "payment"
    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=120, unique=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    location_id: int = Field(foreign_key="location.id")
    method: str = Field(max_length=8)
    amount_cents: int = _money()
    fee_cents: int = _money()  # processor fee, when known
    received_on: date = Field(index=True)
    reference: str | None = Field(default=None, max_length=120)
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_at: datetime = _ts()


class PaymentAllocation(SQLModel, table=True):
    __tablename__ = "payment_allocation"
    __table_args__ = (UniqueConstraint("payment_id", "invoice_id"),)
    id: int | None = Field(default=None, primary_key=True)
    payment_id: int = Field(foreign_key="payment.id")
    invoice_id: int = Field(foreign_key="invoice.id", index=True)
    amount_cents: int = _money()


class Deposit(SQLModel, table=True):
    """A member security deposit: a liability on 2300 until refunded or applied."""

    __tablename__ = "deposit"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    subscription_id: int | None = Field(default=None, foreign_key="subscription.id")
    location_id: int = Field(foreign_key="location.id")
    amount_cents: int = _money()
    received_on: date
    refunded_cents: int = _money()
    refunded_on: date | None = None
    status: str = Field(default="held", max_length=10)  # held / refunded / applied
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    refund_journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")


class DunningNotice(SQLModel, table=True):
    __tablename__ = "dunning_notice"
    __table_args__ = (UniqueConstraint("invoice_id", "stage"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoice.id")
    stage: int  # days past due: 3, 7, 14
    created_at: datetime = _ts()
    outbox_id: int | None = Field(default=None, foreign_key="email_outbox.id")


# --------------------------------------------------------------------------- payables


class Vendor(SQLModel, table=True):
    __tablename__ = "vendor"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    normalized_name: str = Field(max_length=200, unique=True)
    tin: str | None = Field(default=None, max_length=20)
    is_contractor: bool = False
    address: str | None = Field(default=None, max_length=300)
    email: str | None = Field(default=None, max_length=200)
    bank_account_last4: str | None = Field(default=None, max_length=4)
    default_account_code: str | None = Field(default=None, max_length=10)
    mcc: str | None = Field(default=None, max_length=4)
    created_at: datetime = _ts()


class Employee(SQLModel, table=True):
    __tablename__ = "employee"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=200)
    tin: str | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, max_length=300)
    bank_account_last4: str | None = Field(default=None, max_length=4)
    location_id: int | None = Field(default=None, foreign_key="location.id")
    title: str | None = Field(default=None, max_length=80)
    active: bool = True


class Expense(SQLModel, table=True):
    """A receipt or card expense: scanned or imported, confirmed by a person, then posted."""

    __tablename__ = "expense"
    __table_args__ = (Index("ix_expense_dupe", "vendor_name", "expense_date", "amount_cents"),)
    id: int | None = Field(default=None, primary_key=True)
    vendor_id: int | None = Field(default=None, foreign_key="vendor.id")
    vendor_name: str = Field(max_length=200)
    location_id: int = Field(foreign_key="location.id")
    expense_date: date = Field(index=True)
    amount_cents: int = _money()  # total including tax
    tax_cents: int = _money()
    currency: str = Field(default="USD", max_length=3)
    account_code: str | None = Field(default=None, max_length=10)
    cost_center: str | None = Field(default=None, max_length=40)
    description: str | None = Field(default=None, max_length=500)
    payment_method: str = Field(default="card", max_length=8)  # card / cash / ap
    card_last4: str | None = Field(default=None, max_length=4)
    status: str = Field(default=ExpenseStatus.DRAFT, max_length=10)
    source: str = Field(default="manual", max_length=12)  # slack / csv / manual / demo
    image_sha256: str | None = Field(default=None, max_length=64, index=True)
    ocr_text: str | None = None
    fields: dict[str, Any] = _json()  # extracted fields with confidences
    category_confidence_pct: int | None = None
    category_reason: str | None = Field(default=None, max_length=500)
    submitted_by: str | None = Field(default=None, max_length=40)
    confirmed_by: str | None = Field(default=None, max_length=40)
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_at: datetime = _ts()
    # CSV imports: a stable key per file row (content hash + occurrence), so a re-import adds nothing
    import_key: str | None = Field(default=None, max_length=64, unique=True)


class Bill(SQLModel, table=True):
    """A vendor bill (accounts payable), routed for approval by amount."""

    __tablename__ = "bill"
    __table_args__ = (UniqueConstraint("vendor_id", "number"),)
    id: int | None = Field(default=None, primary_key=True)
    vendor_id: int = Field(foreign_key="vendor.id", index=True)
    location_id: int = Field(foreign_key="location.id")
    number: str = Field(max_length=60)
    bill_date: date = Field(index=True)
    due_date: date | None = None
    amount_cents: int = _money()
    tax_cents: int = _money()
    account_code: str = Field(max_length=10)
    memo: str | None = Field(default=None, max_length=500)
    status: str = Field(default=BillStatus.PENDING, max_length=10, index=True)
    required_steps: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    payment_method: str | None = Field(default=None, max_length=8)
    paid_on: date | None = None
    journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    payment_journal_entry_id: int | None = Field(default=None, foreign_key="journal_entry.id")
    created_by: str | None = Field(default=None, max_length=40)
    slack_channel: str | None = Field(default=None, max_length=40)
    slack_ts: str | None = Field(default=None, max_length=40)
    created_at: datetime = _ts()


class Approval(SQLModel, table=True):
    """One decision on one step of an approval; the unique key makes a second click a no-op."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("subject_type", "subject_id", "step"),)
    id: int | None = Field(default=None, primary_key=True)
    subject_type: str = Field(max_length=20)  # bill / billing_run / expense
    subject_id: int
    step: str = Field(max_length=12)  # gm / cfo / manager
    decision: str = Field(max_length=10)  # approved / rejected
    decided_by: str = Field(max_length=40)  # Slack user id
    on_behalf_of: str | None = Field(default=None, max_length=40)  # delegation
    reason: str | None = Field(default=None, max_length=500)
    decided_at: datetime = _ts()


class Delegation(SQLModel, table=True):
    __tablename__ = "delegation"
    id: int | None = Field(default=None, primary_key=True)
    approver_user_id: str = Field(max_length=40, index=True)
    delegate_user_id: str = Field(max_length=40)
    starts_on: date
    ends_on: date
    created_at: datetime = _ts()


# --------------------------------------------------------------------------- people and plans


class SlackUser(SQLModel, table=True):
    """Who may do what: the only source of roles (never the LLM)."""

    __tablename__ = "slack_user"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=20)
    user_id: str = Field(max_length=20)
    name: str = Field(max_length=120)
    role: str = Field(max_length=10)
    location_id: int | None = Field(default=None, foreign_key="location.id")
    employee_id: int | None = Field(default=None, foreign_key="employee.id")
    active: bool = True


class BudgetTarget(SQLModel, table=True):
    __tablename__ = "budget_target"
    __table_args__ = (UniqueConstraint("location_id", "month", "metric"),)
    id: int | None = Field(default=None, primary_key=True)
    location_id: int | None = Field(default=None, foreign_key="location.id")
    month: str = Field(max_length=7)  # YYYY-MM
    metric: str = Field(max_length=20)  # mrr / revenue / expenses
    amount_cents: int = _money()


class TaxRate(SQLModel, table=True):
    __tablename__ = "tax_rate"
    __table_args__ = (UniqueConstraint("location_id", "line_kind", "effective_from"),)
    id: int | None = Field(default=None, primary_key=True)
    location_id: int = Field(foreign_key="location.id")
    line_kind: str = Field(max_length=16)
    name: str = Field(max_length=80)
    rate_ppm: int = Field(ge=0, le=1_000_000)
    effective_from: date
    effective_to: date | None = None


# --------------------------------------------------------------------------- ledger


class Account(SQLModel, table=True):
    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=10, unique=True)
    name: str = Field(max_length=120)
    type: str = Field(max_length=10)
    contra: bool = False
    note: str | None = Field(default=None, max_length=200)
    active: bool = True


class JournalEntry(SQLModel, table=True):
    """A posted, immutable journal entry; corrections are new entries that reverse it."""

    __tablename__ = "journal_entry"
    id: int | None = Field(default=None, primary_key=True)
    entry_date: date = Field(index=True)
    memo: str = Field(max_length=300)
    source_type: str | None = Field(default=None, max_length=20)
    source_id: int | None = None
    idempotency_key: str | None = Field(default=None, max_length=120, unique=True)
    reverses_id: int | None = Field(default=None, foreign_key="journal_entry.id", unique=True)
    posted_by: str | None = Field(default=None, max_length=40)
    posted_at: datetime = _ts()


class JournalLine(SQLModel, table=True):
    """One leg: positive ``amount_cents`` is a debit, negative a credit."""

    __tablename__ = "journal_line"
    __table_args__ = (
        Index("ix_journal_line_account_location", "account_id", "location_id"),
        # KPI queries (finance.kpi): date-bounded sums go entry date -> lines of the entry,
        # balances scan one account; both read only the index (covering)
        Index("ix_journal_line_entry_cover", "entry_id", "account_id", "location_id",
              "member_id", "amount_cents"),
        Index("ix_journal_line_account_cover", "account_id", "location_id", "amount_cents"),
    )
    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="journal_entry.id", index=True)
    account_id: int = Field(foreign_key="account.id")
    amount_cents: int = Field(sa_type=BigInteger)
    currency: str = Field(default="USD", max_length=3)
    location_id: int = Field(foreign_key="location.id")
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    vendor_id: int | None = Field(default=None, foreign_key="vendor.id")
    memo: str | None = Field(default=None, max_length=300)


class LedgerMonthTotal(SQLModel, table=True):
    """Journal lines summed per account, location, currency and entry month.

    Maintained in the same transaction as every posting (``ledger.post_entries`` is the only
    way lines are written), so long-range KPI sums read a few rows instead of every line.
    ``member_*`` count only lines that name a member; ``debit_*`` only positive amounts.
    """

    __tablename__ = "ledger_month_total"
    __table_args__ = (UniqueConstraint("account_id", "location_id", "currency", "month"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    location_id: int = Field(foreign_key="location.id")
    currency: str = Field(max_length=3)
    month: str = Field(max_length=7)  # YYYY-MM of the entry date
    net_cents: int = Field(default=0, sa_type=BigInteger)
    debit_cents: int = Field(default=0, sa_type=BigInteger)
    member_net_cents: int = Field(default=0, sa_type=BigInteger)
    member_debit_cents: int = Field(default=0, sa_type=BigInteger)


class PeriodLock(SQLModel, table=True):
    __tablename__ = "period_lock"
    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=7, unique=True)  # YYYY-MM
    locked_by: str = Field(max_length=40)
    locked_at: datetime = _ts()


class NumberSequence(SQLModel, table=True):
    """Gap-free counters for document numbers (invoices, credit notes); never reset."""

    __tablename__ = "number_sequence"
    name: str = Field(primary_key=True, max_length=40)
    last_value: int = Field(default=0, sa_type=BigInteger)


# --------------------------------------------------------------------------- oversight


class Anomaly(SQLModel, table=True):
    __tablename__ = "anomaly"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    fingerprint: str = Field(max_length=200, unique=True)  # dedupe key
    severity: str = Field(max_length=8)
    location_id: int | None = Field(default=None, foreign_key="location.id")
    reason: str = Field(max_length=1000)
    records: dict[str, Any] = _json()  # {"bill": [12, 13], "vendor": [4]}
    amount_cents: int | None = Field(default=None, sa_type=BigInteger)
    occurred_on: date | None = None
    status: str = Field(default=AnomalyStatus.OPEN, max_length=10, index=True)
    status_by: str | None = Field(default=None, max_length=40)
    status_at: datetime | None = _ts_opt()
    status_note: str | None = Field(default=None, max_length=500)  # why dismissed / resolved
    detected_at: datetime = _ts()


class AuditLog(SQLModel, table=True):
    """Append-only: UPDATE and DELETE are refused by database triggers."""

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    actor: str = Field(max_length=60)
    action: str = Field(max_length=60)
    entity_type: str = Field(max_length=30)
    entity_id: str | None = Field(default=None, max_length=60)
    details: dict[str, Any] = _json()
    correlation_id: str | None = Field(default=None, max_length=40)


class CategorizationRule(SQLModel, table=True):
    """Versioned categorization rules; a change is a new version row, never an edit."""

    __tablename__ = "categorization_rule"
    __table_args__ = (UniqueConstraint("rule_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=80)
    version: int = 1
    body: dict[str, Any] = _json()
    active: bool = True
    created_by: str = Field(max_length=60)
    created_at: datetime = _ts()


class BankTransaction(SQLModel, table=True):
    __tablename__ = "bank_transaction"
    __table_args__ = (UniqueConstraint("bank_account", "fitid"),)
    id: int | None = Field(default=None, primary_key=True)
    bank_account: str = Field(max_length=60)
    fitid: str = Field(max_length=120)
    posted_on: date = Field(index=True)
    amount_cents: int = _money()
    currency: str = Field(default="USD", max_length=3)
    payee: str | None = Field(default=None, max_length=200)
    memo: str | None = Field(default=None, max_length=300)
    matched_type: str | None = Field(default=None, max_length=20)
    matched_id: int | None = None
    imported_at: datetime = _ts()


class EmailOutbox(SQLModel, table=True):
    __tablename__ = "email_outbox"
    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=120, unique=True)
    to_address: str = Field(max_length=200)
    subject: str = Field(max_length=200)
    body: str
    status: str = Field(default="pending", max_length=10)  # pending / sent / failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()
    sent_at: datetime | None = _ts_opt()


class ConversationMessage(SQLModel, table=True):
    """Assistant memory per Slack thread (or terminal session), persisted across restarts."""

    __tablename__ = "conversation_message"
    __table_args__ = (Index("ix_conversation_thread", "thread_key", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    thread_key: str = Field(max_length=120)
    role: str = Field(max_length=10)  # user / assistant / tool
    content: dict[str, Any] = _json()
    created_at: datetime = _ts()


class JobRun(SQLModel, table=True):
    """One row per scheduled job and run key, so a double fire changes nothing."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job_id", "run_key"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=60)
    run_key: str = Field(max_length=60)
    status: str = Field(default="running", max_length=10)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts_opt()
    details: dict[str, Any] = _json()


class PendingAction(SQLModel, table=True):
    """A write the assistant prepared but did not do: it waits for an authorized person's click.

    The model (or a router) can only create these; ``confirm`` re-checks the clicker's role in
    the store and runs the action once (the status moves from pending exactly once).
    """

    __tablename__ = "pending_action"
    id: int | None = Field(default=None, primary_key=True)
    token: str = Field(max_length=40, unique=True)  # what a Confirm button carries
    tool: str = Field(max_length=40)
    args: dict[str, Any] = _json()
    preview: dict[str, Any] = _json()
    requested_by: str = Field(max_length=40)
    team_id: str | None = Field(default=None, max_length=20)
    thread_key: str | None = Field(default=None, max_length=120)
    status: str = Field(default="pending", max_length=10, index=True)  # pending/done/cancelled/failed
    decided_by: str | None = Field(default=None, max_length=40)
    decided_at: datetime | None = _ts_opt()
    result: dict[str, Any] = _json()
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts_opt()


class SlackEvent(SQLModel, table=True):
    """Event ids already handled: Slack retries an event until acked, and this makes it once."""

    __tablename__ = "slack_event"
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=60, unique=True)
    team_id: str | None = Field(default=None, max_length=20)
    received_at: datetime = _ts()


APPEND_ONLY_TABLES = ("audit_log", "journal_entry", "journal_line")
