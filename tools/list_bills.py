"""list_bills: vendor bills by approval status."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from tools.base import MANAGERS, ToolContext, ToolInput, ToolOutput, tool


class ListBillsIn(ToolInput):
    status: Literal["pending", "approved", "rejected", "paid"] | None = Field(
        default=None, description="Only bills in this state; all if empty.")


class BillRow(BaseModel):
    id: int
    vendor: str
    number: str
    amount_cents: int
    bill_date: date
    due_date: date | None
    status: str
    waiting_for: str | None


class ListBillsOut(ToolOutput):
    count: int
    total_cents: int
    bills: list[BillRow]


@tool("list_bills", roles=MANAGERS)
def list_bills(ctx: ToolContext, params: ListBillsIn) -> ListBillsOut:
    """Vendor bills by status (pending/approved/rejected/paid), with who a pending bill waits
    for. Use for 'which bills need approval' or 'show rejected bills'. Read-only."""
    from finance import approvals
    from finance.money import format_cents

    with ctx.services.session() as session:
        views = approvals.list_bills(session, params.status)
    policy = approvals.policy_of(ctx.services)
    rows = [BillRow(id=v.id, vendor=v.vendor, number=v.number, amount_cents=v.amount_cents,
                    bill_date=v.bill_date, due_date=v.due_date, status=v.status,
                    waiting_for=policy.label(v.next_step) if v.next_step else None)
            for v in views]
    total = sum(r.amount_cents for r in rows)
    label = params.status or "all"
    summary = f"{len(rows)} {label} bills, {format_cents(total)}"
    if rows:
        summary += ": " + "; ".join(
            f"#{r.id} {r.vendor} {format_cents(r.amount_cents)}"
            + (f" (waiting for {r.waiting_for})" if r.waiting_for else "") for r in rows[:5])
    return ListBillsOut(summary=summary, count=len(rows), total_cents=total, bills=rows[:50])
