"""The offline path: the router picks a tool and its arguments, the tool answers.

Used when no LLM is configured (the default). The router never executes writes: a write tool
still only returns a preview with a pending action for a person to confirm.
"""

from __future__ import annotations

from typing import Any

from finance.money import format_cents
from tools.base import ToolContext, ToolError, ToolOutput, invoke


def render(tool: str, out: ToolOutput) -> str:
    """A short Slack-friendly answer: the tool's summary plus a few lines of detail."""
    lines = [out.summary]
    data: dict[str, Any] = out.model_dump()
    if tool == "find_invoices":
        for row in data.get("invoices", [])[:10]:
            due = f", due {format_cents(row['due_cents'])}" if row["due_cents"] else ""
            flag = " (overdue)" if row["overdue"] else ""
            lines.append(f"• {row['number'] or 'draft'} {row['member']} {row['period'] or ''} "
                         f"{format_cents(row['total_cents'])} {row['status']}{due}{flag}")
    elif tool == "quote_proration":
        for row in data.get("lines", []):
            lines.append(f"• {row['description']} {row['service_start']}–{row['service_end']}: "
                         f"{format_cents(row['amount_cents'])} + tax "
                         f"{format_cents(row['tax_cents'])}")
    if data.get("pending_action"):
        lines.append("Nothing has been written yet: press Confirm to go ahead.")
    return "\n".join(lines)


def answer_offline(ctx: ToolContext, text: str, vocab: Any) -> tuple[str, str | None]:
    """(answer text, pending action token or None) for one message."""
    from bot.router import Clarify, Routed, route

    decision = route(text, vocab=vocab, today=ctx.today, location_tz=ctx.timezone)
    if isinstance(decision, Clarify):
        return decision.question, None
    if not isinstance(decision, Routed):
        return getattr(decision, "help", None) or HELP, None
    try:
        out = invoke(ctx, decision.tool, dict(decision.args))
    except ToolError as exc:
        return f"Sorry, I couldn't do that: {exc}", None
    return render(decision.tool, out), getattr(out, "pending_action", None)


HELP = (
    "I can help with: KPIs (\"occupancy at Downtown last month\", \"MRR vs plan\"), invoices "
    "(\"Acme's open invoices\"), balances (\"what does Priya owe\"), plan-change quotes "
    "(\"quote Bluebird to Private Office on the 15th\"), billing runs (\"preview November "
    "billing\"), expenses (\"categorize $18.40 at Starbucks\"), anomalies (\"anything weird "
    "this month?\"), bills, rules (\"what's our capitalization threshold?\"), 1099s and sales tax."
)
