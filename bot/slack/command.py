"""`/books`: fast, LLM-free answers, visible only to the person who asked."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import App

from bot.slack import blocks

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

log = logging.getLogger("deskbooks.slack")

HELP = (
    "*/books* answers right away, only to you:\n"
    "• `/books kpi mrr` · `/books kpi occupancy Downtown last month`\n"
    "• `/books quote Acme Design to Private Office on 2026-12-15`\n"
    "• `/books bills` — bills waiting for approval\n"
    "• `/books anomalies` — open findings\n"
    "• `/books close 2026-10` — month-end checklist; locks the month when all pass\n"
    "• `/books <any question>` — same as asking me in a DM, without the LLM"
)


def books_answer(deps: SlackDeps, body: dict[str, Any]) -> str:
    """The reply text for one slash command (mrkdwn, escaped)."""
    from bot.assistant import build_request
    from bot.offline import answer_offline
    from bot.slack.app import actor_of
    from finance.authz import role_of
    from tools.base import ToolContext, ToolError, invoke

    text = " ".join(str(body.get("text") or "").split())
    word, _, rest = text.partition(" ")
    word = word.lower()
    if word in ("", "help", "?"):
        return HELP
    actor = actor_of(body)
    request = build_request(deps.services, actor, text, None)
    with deps.services.session() as session:
        if role_of(session, actor) is None:
            return "I don't know you yet: ask a deskbooks admin to add your Slack user."
    ctx = ToolContext(services=deps.services, actor=actor, today=request.today,
                      timezone=request.timezone, location_id=request.location_id)
    if word == "bills":
        try:
            out = invoke(ctx, "list_bills", {"status": "pending"})
        except ToolError as exc:
            return blocks.escape(str(exc))
        return blocks.escape(_render(out))
    if word == "anomalies":
        from finance.anomalies import list_anomalies

        with deps.services.session() as session:
            rows = list_anomalies(session, status="open")
        if not rows:
            return "No open anomalies."
        lines = [f"*{len(rows)} open anomalies*"]
        lines += [f"• {blocks.escape(r.kind)}: {blocks.escape(r.reason)}" for r in rows[:10]]
        return "\n".join(lines)
    if word == "close":
        return close_answer(deps, actor, rest)
    question = rest if word == "kpi" else text
    reply, token = answer_offline(ctx, question, deps.assistant.vocabulary())
    if token:
        reply += "\n(Ask me in a DM to get the Confirm button.)"
    return blocks.escape(reply)


def close_answer(deps: SlackDeps, actor: Any, rest: str) -> str:
    """`/books close YYYY-MM [check]`: the month-end checklist; locks when all pass (managers)."""
    import re

    from finance.authz import NotAuthorized
    from finance.close import close_period

    parts = rest.split()
    if not parts or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", parts[0]):
        return "Usage: `/books close YYYY-MM` (add `check` to report without locking)"
    try:
        report = close_period(deps.services, actor, parts[0],
                              lock="check" not in [p.lower() for p in parts[1:]])
    except NotAuthorized as exc:
        return blocks.escape(str(exc))
    except ValueError as exc:
        return blocks.escape(f"That didn't work: {exc}")
    return blocks.escape(report.summary_text())


def _render(out: Any) -> str:
    from bot.offline import render

    return render("list_bills", out)


def register(app: App, deps: SlackDeps) -> None:
    @app.command("/books")
    def handle_books(ack: Callable[..., Any], body: dict[str, Any]) -> None:
        try:
            text = books_answer(deps, body)
        except Exception:
            ref = uuid.uuid4().hex[:10]
            log.exception("/books failed (ref %s)", ref)
            text = f"Something went wrong (ref {ref})."
        ack(response_type="ephemeral", text=text[:3000])
