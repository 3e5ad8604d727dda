"""categorize_expense: propose an account, cost center and location for an expense."""

from __future__ import annotations

import datetime as dt
from datetime import date

from pydantic import BaseModel, Field

from tools.base import EVERYONE, ToolContext, ToolInput, ToolOutput, tool


class CategorizeIn(ToolInput):
    vendor: str = Field(min_length=1, max_length=200, description="Who was paid.")
    amount: int = Field(gt=0, description="Total in cents (e.g. 1840 for $18.40).")
    description: str | None = Field(default=None, max_length=2000)
    date: dt.date | None = None
    location: str | None = Field(default=None, description="Location code or name.")


class AlternativeRow(BaseModel):
    account_code: str
    account_name: str
    confidence_pct: int


class CategorizeOut(ToolOutput):
    account_code: str | None
    account_name: str | None
    cost_center: str | None
    confidence_pct: int
    reason: str
    source: str
    capitalized: bool
    alternatives: list[AlternativeRow]


@tool("categorize_expense", roles=EVERYONE)
def categorize_expense(ctx: ToolContext, params: CategorizeIn) -> CategorizeOut:
    """Propose the account (and cost center) for an expense from the rules, the operator's own
    history and the capitalization threshold, with a confidence and a reason. Read-only. Use
    for 'where does a $3,200 chair go' or 'categorize $18.40 at Starbucks'."""
    from finance.categorize import CategorizationRequest, categorize, default_history
    from finance.money import format_cents

    request = CategorizationRequest(vendor=params.vendor, amount_cents=params.amount,
                                    description=params.description, date=params.date,
                                    location=params.location or ctx.location_id)
    result = categorize(ctx.services, request, history=default_history(ctx.services))
    if result.account_code:
        head = (f"{params.vendor} {format_cents(params.amount)} → {result.account_code} "
                f"{result.account_name} ({result.confidence_pct}% sure)")
    else:
        head = f"{params.vendor} {format_cents(params.amount)}: no confident category"
    return CategorizeOut(
        summary=f"{head}. {result.reason}", account_code=result.account_code,
        account_name=result.account_name, cost_center=result.cost_center,
        confidence_pct=result.confidence_pct, reason=result.reason, source=result.source,
        capitalized=result.capitalized,
        alternatives=[AlternativeRow(account_code=a.account_code, account_name=a.account_name,
                                     confidence_pct=a.confidence_pct)
                      for a in result.alternatives[:3]])
