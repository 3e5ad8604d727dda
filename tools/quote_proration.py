"""quote_proration: price a member's plan change from their real subscription."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from tools.base import EVERYONE, ToolContext, ToolInput, ToolOutput, tool


class QuoteIn(ToolInput):
    member: str = Field(description="Member name or code, e.g. 'Acme Design' or 'M-0001'.")
    to_plan: str = Field(description="Target plan name or code, e.g. 'Private Office'.")
    change_date: date = Field(description="First day on the new plan, YYYY-MM-DD.")
    quantity: int | None = Field(default=None, ge=1, le=500,
                                 description="Seats on the new plan; default: as today.")


class QuoteLine(BaseModel):
    description: str
    service_start: str
    service_end: str
    amount_cents: int
    tax_cents: int


class QuoteOut(ToolOutput):
    member: str
    from_plan: str
    to_plan: str
    direction: str
    effective: date
    lines: list[QuoteLine]
    net_cents: int
    tax_cents: int
    total_cents: int


@tool("quote_proration", roles=EVERYONE)
def quote_proration(ctx: ToolContext, params: QuoteIn) -> QuoteOut:
    """Quote what a member pays or is credited when changing plan on a date: credit for the
    unused old plan, charge for the new one, tax, net. Read-only; the same engine bills it, so
    the quote equals the invoice. Use for 'how much if X moves to a private office on the 15th'.
    Not for changing the plan itself."""
    from finance.billing import BillingPolicy
    from finance.money import format_cents
    from finance.subscriptions import quote_change

    with ctx.services.session() as session:
        q = quote_change(session, member=params.member, to_plan=params.to_plan,
                         on=params.change_date,
                         policy=BillingPolicy.from_settings(ctx.services.settings),
                         quantity=params.quantity)
    lines = [QuoteLine(description=line.description,
                       service_start=line.service_start.isoformat(),
                       service_end=line.service_end.isoformat(),
                       amount_cents=line.amount_cents, tax_cents=line.tax_cents)
             for line in q.proration.lines]
    p = q.proration
    when = "now" if q.effective == q.change_date else f"from {q.effective}"
    summary = (f"{q.member_name}: {q.from_plan} → {q.to_plan} ({q.direction}, {when}): "
               f"net {format_cents(p.net_cents)} + tax {format_cents(p.tax_cents)} = "
               f"{format_cents(p.total_cents)}")
    return QuoteOut(summary=summary, member=q.member_name, from_plan=q.from_plan,
                    to_plan=q.to_plan, direction=q.direction, effective=q.effective, lines=lines,
                    net_cents=p.net_cents, tax_cents=p.tax_cents, total_cents=p.total_cents)
