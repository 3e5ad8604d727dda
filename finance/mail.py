"""Dunning reminders through an outbox: queued in the books' transaction, sent when possible.

``queue_dunning`` writes one ``dunning_notice`` per invoice and stage (+3, +7, +14 days past
due; the unique key makes a second run a no-op) and one ``email_outbox`` row with a stable
dedupe key. ``deliver_outbox`` sends pending mail over SMTP; a failure leaves the row pending
with the error and an attempt count, so nothing is lost while the mail server is down.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finance import audit
from finance.models import DunningNotice, EmailOutbox, Invoice, Member
from finance.money import format_cents
from finance.receivables import dunning_due
from finance.types import utcnow

MAX_ATTEMPTS = 10

TONE = {
    3: ("Friendly reminder: invoice {number} is {days} days past due",
        "Hi {name},\n\nA quick reminder that invoice {number} ({amount}) was due on {due}. "
        "If you have already paid, thank you and please ignore this note.\n"),
    7: ("Second notice: invoice {number} is {days} days past due",
        "Hi {name},\n\nInvoice {number} ({amount}) is now {days} days past due. Please pay it "
        "this week or reply if something on it looks wrong.\n"),
    14: ("Final notice: invoice {number} is {days} days past due",
         "Hi {name},\n\nInvoice {number} ({amount}) is {days} days past due. Please pay it "
         "within 7 days to keep your membership in good standing. Reply to this e-mail if you "
         "need a payment plan.\n"),
}


class MailError(RuntimeError):
    """Mail could not be sent (the outbox keeps it)."""


@dataclass(frozen=True)
class OutboxReport:
    sent: int
    failed: int
    pending: int


Sender = Callable[[str, str, str], None]  # (to, subject, body)


def queue_dunning(session: Session, today: date) -> int:
    """Queue the reminders due today; returns how many were queued (0 on a rerun)."""
    queued = 0
    for item in dunning_due(session, today):
        inv = session.get(Invoice, item.invoice_id)
        member = session.get(Member, item.member_id)
        if inv is None or member is None:
            continue
        subject_t, body_t = TONE[item.stage]
        values = {"number": item.number, "days": item.days_past_due,
                  "amount": format_cents(item.amount_due_cents, inv.currency),
                  "due": inv.due_date, "name": member.name}
        key = f"dunning:{item.invoice_id}:{item.stage}"
        try:
            with session.begin_nested():
                outbox = EmailOutbox(dedupe_key=key, to_address=member.email or "",
                                     subject=subject_t.format(**values),
                                     body=body_t.format(**values),
                                     status="pending" if member.email else "failed",
                                     last_error=None if member.email else "member has no e-mail")
                session.add(outbox)
                session.flush()
                session.add(DunningNotice(invoice_id=item.invoice_id, stage=item.stage,
                                          outbox_id=outbox.id))
                session.flush()
        except IntegrityError:
            continue  # another run queued it first
        queued += 1
    if queued:
        audit.record(session, actor="system:dunning", action="dunning.queue",
                     entity_type="email_outbox", details={"queued": queued,
                                                          "on": today.isoformat()})
    return queued


def smtp_sender(url: str, mail_from: str, *, timeout: int = 20) -> Sender:
    """A sender for ``smtp://[user:pass@]host[:port]`` (STARTTLS when offered) or ``smtps://``."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailError("DESKBOOKS_SMTP_URL must look like smtp://host:587 or smtps://host:465")

    def send(to: str, subject: str, body: str) -> None:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = mail_from, to, subject
        msg.set_content(body)
        try:
            if parts.scheme == "smtps":
                client: smtplib.SMTP = smtplib.SMTP_SSL(parts.hostname, parts.port or 465,
                                                        timeout=timeout,
                                                        context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=timeout)
            with client:
                if parts.scheme == "smtp" and client.has_extn("starttls"):
                    client.starttls(context=ssl.create_default_context())
                if parts.username:
                    client.login(unquote(parts.username), unquote(parts.password or ""))
                client.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"{type(exc).__name__}: {str(exc)[:200]}") from None

    return send


def deliver_outbox(session_factory: Callable[[], object], send: Sender, *,
                   limit: int = 200) -> OutboxReport:
    """Send pending mail one row per transaction; failures stay pending with the error."""
    with session_factory() as session:  # type: ignore[attr-defined]
        ids = list(session.execute(
            select(EmailOutbox.id).where(EmailOutbox.status == "pending",
                                         EmailOutbox.attempts < MAX_ATTEMPTS)
            .order_by(EmailOutbox.id).limit(limit)).scalars())
    sent = failed = 0
    for outbox_id in ids:
        with session_factory() as session:  # type: ignore[attr-defined]
            row = session.execute(select(EmailOutbox).where(EmailOutbox.id == outbox_id)
                                  .with_for_update()).scalar_one()
            if row.status != "pending":
                continue
            row.attempts += 1
            try:
                send(row.to_address, row.subject, row.body)
            except MailError as exc:
                row.last_error = str(exc)[:500]
                failed += 1
                continue
            row.status, row.sent_at, row.last_error = "sent", utcnow(), None
            sent += 1
    with session_factory() as session:  # type: ignore[attr-defined]
        pending = len(list(session.execute(
            select(EmailOutbox.id).where(EmailOutbox.status == "pending")).scalars()))
    return OutboxReport(sent, failed, pending)
