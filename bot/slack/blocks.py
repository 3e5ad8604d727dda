"""Pure Block Kit builders: data in, blocks out. Every user-supplied string is escaped.

Slack mrkdwn treats ``<...>`` as links and mentions (``<!channel>`` pings everyone) and ``&``
as an entity, so text from members, vendors, receipts and the assistant goes through
:func:`escape` before it is put in a block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.slack import ids
from finance.money import format_cents

MAX_TEXT = 2900  # section text limit is 3000 characters


def escape(text: object) -> str:
    """Neutralize mrkdwn control characters (&, <, >) in untrusted text."""
    raw = str(text)
    return raw.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, 2000)}]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text},
                         "action_id": action_id, "value": value}
    if style:
        b["style"] = style
    return b


def actions_block(*elements: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements)}
    if block_id:
        block["block_id"] = block_id
    return block


# --------------------------------------------------------------------------- assistant


def build_answer(text: str, *, pending: Sequence[dict[str, str]] = (),
                 ref: str | None = None) -> list[dict[str, Any]]:
    """The assistant's reply, with Confirm / Cancel for each prepared write."""
    blocks = [section(escape(text))]
    for action in pending:
        blocks.append(actions_block(
            button("Confirm", ids.CONFIRM_ACTION, action["token"], "primary"),
            button("Cancel", ids.CANCEL_ACTION, action["token"]),
        ))
    if ref:
        blocks.append(context(f"ref {escape(ref)}"))
    return blocks


def build_error(ref: str) -> list[dict[str, Any]]:
    return [section(f":warning: Something went wrong on my side. Please try again; if it keeps "
                    f"happening, give an admin this reference: `{escape(ref)}`")]


def build_action_done(summary: str, user_id: str, outcome: str) -> list[dict[str, Any]]:
    mark = {"done": ":white_check_mark:", "cancelled": ":x:"}.get(outcome, ":information_source:")
    return [section(f"{mark} {escape(summary)}"), context(f"by <@{escape(user_id)}>")]


# --------------------------------------------------------------------------- bills


def build_bill_card(bill: Any, *, vendor: str, waiting_for: str | None,
                    history: Iterable[str] = ()) -> list[dict[str, Any]]:
    """A bill awaiting approval (or its final state), Approve / Reject while pending."""
    lines = [f"*Bill {escape(bill.number)}* from *{escape(vendor)}*: "
             f"{format_cents(bill.amount_cents)}",
             f"Account {escape(bill.account_code)} · dated {bill.bill_date}"
             + (f" · due {bill.due_date}" if bill.due_date else "")]
    if getattr(bill, "memo", None):
        lines.append(f"Memo: {escape(bill.memo)}")
    blocks = [section("\n".join(lines))]
    for entry in history:
        blocks.append(context(entry))
    if bill.status == "pending" and waiting_for:
        blocks.append(context(f"Waiting for: {escape(waiting_for)}"))
        blocks.append(actions_block(
            button("Approve", ids.BILL_APPROVE, f"bill:{bill.id}", "primary"),
            button("Reject", ids.BILL_REJECT, f"bill:{bill.id}", "danger"),
            block_id=f"bill:{bill.id}"))
    else:
        blocks.append(context(f"Status: *{escape(bill.status)}*"))
    return blocks


def build_reject_modal(bill_id: int, channel: str | None, ts: str | None) -> dict[str, Any]:
    return {
        "type": "modal", "callback_id": ids.BILL_REJECT_MODAL,
        "private_metadata": f"bill:{bill_id}|{channel or ''}|{ts or ''}",
        "title": {"type": "plain_text", "text": "Reject bill"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input", "block_id": ids.REASON_BLOCK,
            "label": {"type": "plain_text", "text": "Why is it rejected?"},
            "element": {"type": "plain_text_input", "action_id": ids.REASON_INPUT,
                        "multiline": True, "min_length": 3, "max_length": 500},
        }],
    }


# --------------------------------------------------------------------------- receipts


def build_receipt_card(expense: Any, *, account_name: str | None, confidence: int | None,
                       reason: str | None, duplicates: Sequence[Any] = (),
                       suspicious: bool = False) -> list[dict[str, Any]]:
    """What the bot read from a receipt and what it proposes, with Confirm / Change / Discard."""
    amount = format_cents(expense.amount_cents, expense.currency)
    lines = [f"*Receipt:* {escape(expense.vendor_name)} · {expense.expense_date} · *{amount}*"]
    if expense.tax_cents:
        lines.append(f"Tax {format_cents(expense.tax_cents, expense.currency)}")
    if expense.card_last4:
        lines.append(f"Card ending {escape(expense.card_last4)}")
    if expense.account_code:
        lines.append(f"Proposed: *{escape(expense.account_code)} {escape(account_name or '')}*"
                     + (f" · cost center {escape(expense.cost_center)}"
                        if expense.cost_center else "")
                     + (f" · {confidence}% sure" if confidence is not None else ""))
    blocks = [section("\n".join(lines))]
    if reason:
        blocks.append(context(escape(reason)))
    if duplicates:
        first = duplicates[0]
        blocks.append(section(f":warning: Possible duplicate of expense #{first.id} "
                              f"({escape(first.vendor_name)}, {first.expense_date}, "
                              f"{format_cents(first.amount_cents)})"))
    if suspicious:
        blocks.append(context(":warning: The receipt contains instruction-like text; "
                              "it was treated as data only."))
    if expense.status == "draft":
        value = f"expense:{expense.id}"
        buttons = [button("Confirm", ids.RECEIPT_CONFIRM, value, "primary"),
                   button("Change category", ids.RECEIPT_CHANGE, value),
                   button("Discard", ids.RECEIPT_DISCARD, value, "danger")]
        if duplicates:
            buttons.insert(1, button("Not a duplicate: post it", ids.RECEIPT_CONFIRM_ANYWAY,
                                     value))
        blocks.append(actions_block(*buttons, block_id=value))
    return blocks


def build_category_modal(expense_id: int, accounts: Sequence[tuple[str, str]],
                         current: str | None, channel: str | None,
                         ts: str | None) -> dict[str, Any]:
    options = [{"text": {"type": "plain_text", "text": _clip(f"{code} {name}", 75)},
                "value": code} for code, name in accounts[:100]]
    element: dict[str, Any] = {"type": "static_select", "action_id": ids.ACCOUNT_INPUT,
                               "options": options}
    initial = next((o for o in options if o["value"] == current), None)
    if initial:
        element["initial_option"] = initial
    return {
        "type": "modal", "callback_id": ids.RECEIPT_CATEGORY_MODAL,
        "private_metadata": f"expense:{expense_id}|{channel or ''}|{ts or ''}",
        "title": {"type": "plain_text", "text": "Change category"},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": [{"type": "input", "block_id": ids.ACCOUNT_BLOCK,
                    "label": {"type": "plain_text", "text": "Account"}, "element": element}],
    }


# --------------------------------------------------------------------------- anomalies


def build_anomaly_alert(anomaly: Any) -> list[dict[str, Any]]:
    sev = {"high": ":red_circle:", "medium": ":large_orange_circle:"}.get(
        anomaly.severity, ":white_circle:")
    blocks = [section(f"{sev} *{escape(anomaly.kind.replace('_', ' '))}*: "
                      f"{escape(anomaly.reason)}")]
    if anomaly.status == "open":
        blocks.append(actions_block(
            button("Investigate", ids.ANOMALY_INVESTIGATE, f"anomaly:{anomaly.id}", "primary"),
            button("Dismiss", ids.ANOMALY_DISMISS, f"anomaly:{anomaly.id}"),
            block_id=f"anomaly:{anomaly.id}"))
    else:
        by = f" by <@{escape(anomaly.status_by)}>" if anomaly.status_by else ""
        blocks.append(context(f"{escape(anomaly.status)}{by}"))
    return blocks


# --------------------------------------------------------------------------- home


def build_home(tiles: Sequence[tuple[str, str]], sections: Sequence[tuple[str, Sequence[str]]],
               *, as_of: str) -> dict[str, Any]:
    """App Home: KPI tiles, then short lists (pending approvals, anomalies, overdue A/R)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "deskbooks"}},
        context(f"as of {escape(as_of)}"),
    ]
    fields = [{"type": "mrkdwn", "text": f"*{escape(label)}*\n{escape(value)}"}
              for label, value in tiles]
    for i in range(0, len(fields), 10):
        blocks.append({"type": "section", "fields": fields[i:i + 10]})
    for title, items in sections:
        blocks.append({"type": "divider"})
        body = "\n".join(f"• {item}" for item in items[:8]) if items else "_nothing_"
        blocks.append(section(f"*{escape(title)}*\n{body}"))
    return {"type": "home", "blocks": blocks[:100]}
