"""find_invoices: look up invoices by member, status and billing month."""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from tools.base import EVERYONE, ToolContext, ToolInput, ToolOutput, tool

MAX_ROWS = 50


class FindInvoicesIn(ToolInput):
    member: str | None = Field(default=None, description="Member name or code.")
    status: Literal["draft", "open", "paid", "overdue", "void"] | None = Field(
        default=None, description="overdue = open and past its due date.")
    period: str | None = Field(default=None, description="Billing month YYYY-MM.")

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ValueError("period must look like YYYY-MM")
        return value


class InvoiceRow(BaseModel):
    id: int
    number: str | None
    member: str
    period: str | None
    status: str
    issue_date: date | None
    due_date: date | None
    total_cents: int
    due_cents: int
    overdue: bool


class FindInvoicesOut(ToolOutput):
    count: int
    total_cents: int
    due_cents: int
    invoices: list[InvoiceRow]
    truncated: bool


@tool("find_invoices", roles=EVERYONE)
def find_invoices(ctx: ToolContext, params: FindInvoicesIn) -> FindInvoicesOut:
    """Find invoices by member, status (draft/open/paid/overdue/void) and billing month, with
    totals and what is still due. Use for 'show Acme's open invoices' or 'what's overdue'.
    Not for a member's overall balance (use member_balance)."""
    from finance.models import Invoice, InvoiceStatus, Member
    from finance.money import format_cents
    from finance.receivables import amount_due
    from finance.subscriptions import find_member

    with ctx.services.session() as session:
        query = select(Invoice, Member.name).join(Member, Member.id == Invoice.member_id)
        who = ""
        if params.member:
            member = find_member(session, params.member)
            query = query.where(Invoice.member_id == member.id)
            who = f" for {member.name}"
        if params.period:
            query = query.where(Invoice.period == params.period)
        if params.status == "overdue":
            query = query.where(Invoice.status == InvoiceStatus.OPEN,
                                Invoice.due_date < ctx.today)
        elif params.status == "draft":
            query = query.where(Invoice.status.in_([InvoiceStatus.DRAFT, InvoiceStatus.APPROVED]))
        elif params.status:
            query = query.where(Invoice.status == params.status)
        rows = session.execute(
            query.order_by(Invoice.issue_date.desc(), Invoice.id.desc()).limit(MAX_ROWS + 1)
        ).all()
    out = []
    for inv, name in rows[:MAX_ROWS]:
        due = amount_due(inv) if inv.status == InvoiceStatus.OPEN else 0
        out.append(InvoiceRow(
            id=inv.id, number=inv.number, member=name, period=inv.period, status=inv.status,
            issue_date=inv.issue_date, due_date=inv.due_date, total_cents=inv.total_cents,
            due_cents=due, overdue=bool(due and inv.due_date and inv.due_date < ctx.today)))
    total = sum(r.total_cents for r in out)
    due = sum(r.due_cents for r in out)
    label = params.status or "all"
    more = " (first 50 shown)" if len(rows) > MAX_ROWS else ""
    summary = (f"{len(out)} {label} invoices{who}"
               + (f" in {params.period}" if params.period else "")
               + f": total {format_cents(total)}, still due {format_cents(due)}{more}")
    return FindInvoicesOut(summary=summary, count=len(out), total_cents=total, due_cents=due,
                           invoices=out, truncated=len(rows) > MAX_ROWS)
