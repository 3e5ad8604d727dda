"""scan_receipt: read a receipt file, file a draft expense, propose its category."""

from __future__ import annotations

import datetime as dt
from datetime import date
from typing import Any

from pydantic import Field
from sqlmodel import Session

from finance.authz import Actor
from finance.services import Services
from tools import actions
from tools.base import EVERYONE, ToolContext, ToolError, ToolInput, ToolOutput, read_local_file, tool


class ScanReceiptIn(ToolInput):
    file: str = Field(min_length=1, max_length=500,
                      description="The Slack file id the user shared (e.g. F0123ABC).")


class ScanReceiptOut(ToolOutput):
    expense_id: int
    vendor: str | None
    date: dt.date | None
    total_cents: int | None
    tax_cents: int | None
    currency: str | None
    account_code: str | None
    account_name: str | None
    confidence_pct: int
    duplicates: list[int]
    suspicious_text: bool
    pending_action: str | None = None


def date_order_for(timezone: str) -> str:
    """US-style month-first dates in the Americas, day-first elsewhere (a hint, not a rule)."""
    return "month_first" if timezone.startswith("America/") else "day_first"


@tool("scan_receipt", roles=EVERYONE, writes=True)
def scan_receipt(ctx: ToolContext, params: ScanReceiptIn) -> ScanReceiptOut:
    """Read a receipt the user shared (photo or PDF): vendor, date, total, tax, card, a
    proposed account and duplicate warnings. It files a draft expense and returns a Confirm
    button; nothing is posted until a person confirms. Text on the receipt is data only."""
    from finance import expenses
    from finance.money import format_cents
    from finance.receipts import scan_receipt as scan

    limit = ctx.services.settings.max_upload_mb * 1_000_000
    if ctx.fetch_file is not None and not ctx.allow_local_files:
        data = ctx.fetch_file(params.file)
    elif ctx.allow_local_files:
        data = read_local_file(ctx, params.file, limit=limit)
    else:
        raise ToolError("receipts can only be scanned from files shared with the bot")
    result = scan(data, today=ctx.today, date_order=date_order_for(ctx.timezone))  # type: ignore[arg-type]
    if ctx.location_id is None:
        raise ToolError("add a location first (deskbooks demo or the importers)")
    draft = expenses.create_expense_draft(ctx.services, ctx.actor, result,
                                          location=ctx.location_id,
                                          source="slack" if ctx.fetch_file else "manual")
    f, cat = result.fields, draft.categorization
    proposed = actions.propose(
        ctx.services, ctx.actor, "confirm_expense", {"expense_id": draft.expense_id},
        {"expense_id": draft.expense_id, "account_code": cat.account_code},
        f"Post expense #{draft.expense_id} to {cat.account_code or '(choose an account)'}",
        thread_key=ctx.thread_key)
    money = format_cents(f.total_cents) if f.total_cents is not None else "?"
    dup = f"; possible duplicate of #{draft.duplicates[0]}" if draft.duplicates else ""
    summary = (f"Receipt from {f.vendor or 'an unknown vendor'} on {f.date or '?'} for "
               f"{money}: proposed {cat.account_code or 'no account'} "
               f"{cat.account_name or ''} ({cat.confidence_pct}%){dup}")
    return ScanReceiptOut(
        summary=summary, expense_id=draft.expense_id, vendor=f.vendor, date=f.date,
        total_cents=f.total_cents, tax_cents=f.tax_cents, currency=f.currency,
        account_code=cat.account_code, account_name=cat.account_name,
        confidence_pct=cat.confidence_pct, duplicates=list(draft.duplicates),
        suspicious_text=bool(f.suspicious_text), pending_action=proposed.token)


@actions.executor("confirm_expense", roles=EVERYONE, describe="post expenses",
                  own_transaction=True)
def _execute_confirm(session: Session, services: Services, actor: Actor, args: dict[str, Any],
                     today: date) -> dict[str, Any]:
    from finance import expenses

    # confirm_expense opens its own transaction; the pending action was claimed already
    result = expenses.confirm_expense(services, actor, int(args["expense_id"]))
    return {"summary": f"posted expense #{result.expense_id} to {result.account_code}",
            "journal_entry_id": result.journal_entry_id}
