"""After an invoice is issued: payments, credit notes, voids, deposits, dunning, recognition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finance import audit, ledger
from finance.authz import FINANCE_WRITERS, Actor, require_role
from finance.billing import (
    BillingError,
    next_numbers,
    recognition_schedule,
    release_usage,
)
from finance.ledger import EntryDraft, Leg
from finance.util import chunks
from finance.models import (
    CreditNote,
    Deposit,
    DunningNotice,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    JournalEntry,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)
from finance.money import allocate

CLEARING_ACCOUNT = {
    PaymentMethod.CARD: "1050",  # processor payouts arrive later
    PaymentMethod.CASH: "1010",  # undeposited funds
    PaymentMethod.CHECK: "1010",
    PaymentMethod.ACH: "1000",
}
DUNNING_STAGES = (14, 7, 3)


def amount_due(inv: Invoice) -> int:
    return inv.total_cents - inv.credit_applied_cents - inv.amount_paid_cents


# --------------------------------------------------------------------------- payments


def record_payment(
    session: Session,
    *,
    member_id: int,
    location_id: int,
    amount_cents: int,
    method: str,
    received_on: date,
    actor: Actor,
    reference: str | None = None,
    external_id: str | None = None,
    invoice_ids: Sequence[int] | None = None,
) -> Payment:
    """Record money received and allocate it to open invoices, oldest first.

    Anything left over stays as member credit (a negative receivable) for the next invoice.
    With an ``external_id`` already recorded, the first payment is returned unchanged.
    """
    require_role(session, actor, FINANCE_WRITERS, "record payments")
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise BillingError("a payment must be a positive amount in cents")
    try:
        pm = PaymentMethod(method)
    except ValueError:
        raise BillingError(f"unknown payment method {method!r}; use card, cash, check or ach") from None
    if external_id:
        found = session.execute(
            select(Payment).where(Payment.external_id == external_id)
        ).scalar_one_or_none()
        if found is not None:
            return found
    payment = Payment(member_id=member_id, location_id=location_id, method=pm.value,
                      amount_cents=amount_cents, received_on=received_on, reference=reference,
                      external_id=external_id)
    session.add(payment)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise BillingError(f"payment {external_id} was recorded concurrently") from None
    stmt = (select(Invoice).where(Invoice.member_id == member_id,
                                  Invoice.status == InvoiceStatus.OPEN)
            .order_by(Invoice.due_date, Invoice.id).with_for_update())
    if invoice_ids is not None:
        stmt = stmt.where(Invoice.id.in_(list(invoice_ids)))  # type: ignore[union-attr]
    left = amount_cents
    for inv in session.execute(stmt).scalars():
        if left <= 0:
            break
        take = min(left, amount_due(inv))
        if take <= 0:
            continue
        session.add(PaymentAllocation(payment_id=payment.id, invoice_id=inv.id,
                                      amount_cents=take))
        inv.amount_paid_cents += take
        if amount_due(inv) <= 0:
            inv.status = InvoiceStatus.PAID
        left -= take
    entry = ledger.post_entry(session, EntryDraft(
        received_on, f"Payment by {pm.value}" + (f" ({reference})" if reference else ""),
        [Leg(CLEARING_ACCOUNT[pm], amount_cents, location_id, member_id=member_id),
         Leg("1100", -amount_cents, location_id, member_id=member_id)],
        source_type="payment", source_id=payment.id,
        idempotency_key=f"payment:{payment.id}"), actor=actor.label)
    payment.journal_entry_id = entry.id
    audit.record(session, actor=actor.label, action="payment.record", entity_type="payment",
                 entity_id=payment.id, details={"amount_cents": amount_cents,
                                                "unapplied_cents": left})
    session.flush()
    return payment


# --------------------------------------------------------------------------- corrections


def issue_credit_note(
    session: Session,
    invoice_id: int,
    *,
    amount_cents: int,
    reason: str,
    on: date,
    actor: Actor,
    prefix: str = "CN",
) -> CreditNote:
    """Credit part or all of an issued invoice (before tax); tax is credited in proportion.

    The credit reduces what is due on the invoice; anything beyond that becomes member credit.
    Posting: Dr 4900 Discounts & Credits, Dr 2100 Sales Tax Payable, Cr 1100 receivable.
    """
    require_role(session, actor, FINANCE_WRITERS, "issue credit notes")
    inv = session.get(Invoice, invoice_id, with_for_update=True)
    if inv is None:
        raise BillingError(f"no invoice {invoice_id}")
    if inv.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
        raise BillingError(f"only issued invoices take credit notes (this one is {inv.status})")
    if not reason.strip():
        raise BillingError("a credit note needs a reason")
    credited = sum(c.amount_cents for c in session.execute(
        select(CreditNote).where(CreditNote.invoice_id == invoice_id)).scalars())
    room = inv.subtotal_cents - credited
    if not 0 < amount_cents <= room:
        raise BillingError(f"credit must be between $0.01 and the uncredited subtotal "
                           f"({room} cents)")
    tax = 0
    if inv.subtotal_cents:
        tax = allocate(inv.tax_cents, [amount_cents, inv.subtotal_cents - amount_cents])[0] \
            if inv.subtotal_cents > amount_cents else inv.tax_cents
    (number,) = next_numbers(session, "credit_note", 1)
    note = CreditNote(number=f"{prefix}-{on.year}-{number:06d}", invoice_id=inv.id,
                      member_id=inv.member_id, location_id=inv.location_id,
                      amount_cents=amount_cents, tax_cents=tax, reason=reason.strip()[:500],
                      issue_date=on, created_by=actor.label[:40])
    session.add(note)
    session.flush()
    legs = [Leg("4900", amount_cents, inv.location_id, member_id=inv.member_id),
            Leg("1100", -(amount_cents + tax), inv.location_id, member_id=inv.member_id,
                memo=note.number)]
    if tax:
        legs.append(Leg("2100", tax, inv.location_id, member_id=inv.member_id))
    entry = ledger.post_entry(session, EntryDraft(on, f"Credit note {note.number} on {inv.number}",
                                                  legs, source_type="credit_note",
                                                  source_id=note.id), actor=actor.label)
    note.journal_entry_id = entry.id
    # the credit first reduces what is still due on this invoice
    reduce = min(amount_due(inv), amount_cents + tax)
    if reduce > 0:
        inv.credit_applied_cents += reduce
        if amount_due(inv) <= 0:
            inv.status = InvoiceStatus.PAID
    audit.record(session, actor=actor.label, action="credit_note.issue",
                 entity_type="credit_note", entity_id=note.id,
                 details={"invoice": inv.number, "amount_cents": amount_cents, "tax_cents": tax,
                          "reason": reason[:200]})
    session.flush()
    return note


def void_invoice(session: Session, invoice_id: int, *, reason: str, on: date,
                 actor: Actor) -> Invoice:
    """Void an issued, unpaid invoice: reverse its posting and free its usage for rebilling."""
    require_role(session, actor, FINANCE_WRITERS, "void invoices")
    inv = session.get(Invoice, invoice_id, with_for_update=True)
    if inv is None:
        raise BillingError(f"no invoice {invoice_id}")
    if inv.status == InvoiceStatus.VOID:
        return inv
    if inv.status != InvoiceStatus.OPEN or inv.amount_paid_cents or inv.credit_applied_cents:
        raise BillingError(
            f"invoice {inv.number or inv.id} is {inv.status} with payments or credits; "
            "issue a credit note instead"
        )
    if inv.journal_entry_id is not None:
        ledger.reverse_entry(session, inv.journal_entry_id, on_date=on, actor=actor.label,
                             reason=f"void {inv.number}: {reason}")
    release_usage(session, inv.id)  # type: ignore[arg-type]
    for dep in session.execute(select(Deposit).join(
            InvoiceLine, InvoiceLine.subscription_id == Deposit.subscription_id).where(
            InvoiceLine.invoice_id == inv.id, Deposit.status == "held")).scalars():
        dep.status = "void"
    inv.status = InvoiceStatus.VOID
    from finance.types import utcnow
    inv.voided_at = utcnow()
    audit.record(session, actor=actor.label, action="invoice.void", entity_type="invoice",
                 entity_id=inv.id, details={"number": inv.number, "reason": reason[:200]})
    session.flush()
    return inv


# --------------------------------------------------------------------------- deposits


def refund_deposit(
    session: Session, deposit_id: int, *, amount_cents: int, on: date, actor: Actor,
    method: str = "ach",
) -> Deposit:
    """Pay a held deposit back (Dr 2300 / Cr cash); a deposit is never revenue."""
    require_role(session, actor, FINANCE_WRITERS, "refund deposits")
    dep = session.get(Deposit, deposit_id, with_for_update=True)
    if dep is None:
        raise BillingError(f"no deposit {deposit_id}")
    if dep.status != "held":
        raise BillingError(f"deposit {deposit_id} is {dep.status}, not held")
    if not 0 < amount_cents <= dep.amount_cents - dep.refunded_cents:
        raise BillingError("refund must be positive and at most the deposit still held")
    cash = "1000" if method in ("ach", "check") else CLEARING_ACCOUNT.get(PaymentMethod(method), "1000")
    entry = ledger.post_entry(session, EntryDraft(
        on, f"Deposit refund #{dep.id}",
        [Leg("2300", amount_cents, dep.location_id, member_id=dep.member_id),
         Leg(cash, -amount_cents, dep.location_id, member_id=dep.member_id)],
        source_type="deposit", source_id=dep.id), actor=actor.label)
    dep.refunded_cents += amount_cents
    dep.refunded_on = on
    dep.refund_journal_entry_id = entry.id
    if dep.refunded_cents == dep.amount_cents:
        dep.status = "refunded"
    audit.record(session, actor=actor.label, action="deposit.refund", entity_type="deposit",
                 entity_id=dep.id, details={"amount_cents": amount_cents})
    session.flush()
    return dep


# --------------------------------------------------------------------------- dunning


def dunning_stage(due_date: date | None, today: date) -> int | None:
    """The reminder stage reached: 3, 7 or 14 days past due, or None."""
    if due_date is None:
        return None
    late = (today - due_date).days
    return next((stage for stage in DUNNING_STAGES if late >= stage), None)


@dataclass(frozen=True)
class DunningItem:
    invoice_id: int
    number: str
    member_id: int
    stage: int
    days_past_due: int
    amount_due_cents: int


def dunning_due(session: Session, today: date) -> list[DunningItem]:
    """Open invoices whose latest reached stage has no notice yet (earlier stages skipped)."""
    sent = {(n.invoice_id, n.stage) for n in session.execute(select(DunningNotice)).scalars()}
    out = []
    for inv in session.execute(
        select(Invoice).where(Invoice.status == InvoiceStatus.OPEN,
                              Invoice.due_date < today - timedelta(days=2))  # type: ignore[operator]
        .order_by(Invoice.due_date, Invoice.id)
    ).scalars():
        stage = dunning_stage(inv.due_date, today)
        if stage is None or amount_due(inv) <= 0 or (inv.id, stage) in sent:
            continue
        out.append(DunningItem(inv.id, inv.number or "", inv.member_id, stage,  # type: ignore[arg-type]
                               (today - inv.due_date).days, amount_due(inv)))  # type: ignore[operator]
    return out


# --------------------------------------------------------------------------- recognition


def recognitions_due(
    session: Session, through: str,
) -> list[tuple[str, InvoiceLine, str, int, date, int]]:
    """Every month slice of deferred revenue whose month has started by ``through``
    (YYYY-MM): ``(idempotency key, line, month, cents, issue date, member id)``, posted or not.
    """
    rows = session.execute(
        select(InvoiceLine, Invoice.issue_date, Invoice.member_id)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(InvoiceLine.deferred_cents != 0,
               Invoice.status.in_([InvoiceStatus.OPEN, InvoiceStatus.PAID]))  # type: ignore[attr-defined]
    ).all()
    out = []
    for line, issued, member_id in rows:
        issue_month = f"{issued.year:04d}-{issued.month:02d}"
        for month, cents in recognition_schedule(line):
            if issue_month < month <= through and cents:
                out.append((f"recognize:{line.id}:{month}", line, month, cents, issued,
                            member_id))
    return out


def recognize_revenue(session: Session, as_of: date, *, actor: Actor) -> int:
    """Move deferred revenue whose service month has started into revenue; idempotent.

    One entry per invoice line and month (key ``recognize:<line>:<YYYY-MM>``), dated the first
    of that month or the issue date if later. Returns the number of entries posted.
    """
    require_role(session, actor, FINANCE_WRITERS, "recognize revenue")
    current = f"{as_of.year:04d}-{as_of.month:02d}"
    wanted: list[tuple[str, EntryDraft]] = [
        (key, EntryDraft(
            max(date(int(month[:4]), int(month[5:]), 1), issued),
            f"Recognize {month} of invoice line {line.id}",
            [Leg("2200", cents, line.location_id, member_id=member_id),
             Leg(line.account_code, -cents, line.location_id, member_id=member_id)],
            source_type="recognition", source_id=line.id, idempotency_key=key))
        for key, line, month, cents, issued, member_id in recognitions_due(session, current)
    ]
    if not wanted:
        return 0
    done: set[str] = set()
    keys = [k for k, _ in wanted]
    for chunk in chunks(keys, 2000):
        done |= set(session.execute(
            select(JournalEntry.idempotency_key).where(
                JournalEntry.idempotency_key.in_(chunk))).scalars())  # type: ignore[union-attr]
    todo = []
    for key, draft in wanted:
        if key in done:
            continue
        if ledger.is_locked(session, draft.entry_date):  # late: recognize today instead
            draft = EntryDraft(as_of, draft.memo, draft.legs, draft.source_type,
                               draft.source_id, key)
        todo.append(draft)
    if todo:
        ledger.post_entries(session, todo, actor=actor.label, audit_each=False)
    return len(todo)
