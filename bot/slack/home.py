"""App Home: a live dashboard, rebuilt every time a manager opens it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.slack import blocks
from finance.money import format_cents

if TYPE_CHECKING:
    from bot.slack.app import SlackDeps

log = logging.getLogger("deskbooks.slack")


def build_dashboard(deps: SlackDeps, user_id: str, team_id: str | None) -> dict[str, Any]:
    """Tiles and lists from the same tools the assistant uses (roles apply)."""
    from bot.assistant import build_request
    from finance.authz import Actor
    from tools.base import ToolContext, ToolError, invoke

    actor = Actor(user_id, team_id)
    request = build_request(deps.services, actor, "", None)
    ctx = ToolContext(services=deps.services, actor=actor, today=request.today,
                      timezone=request.timezone, location_id=request.location_id)
    start = request.today.replace(day=1).isoformat()
    end = request.today.isoformat()
    tiles: list[tuple[str, str]] = []
    sections: list[tuple[str, list[str]]] = []

    def tile(label: str, tool: str, args: dict[str, Any]) -> None:
        try:
            out = invoke(ctx, tool, args)
        except ToolError as exc:
            tiles.append((label, str(exc)[:60]))
            return
        tiles.append((label, out.summary[:120]))

    tile("MRR", "lookup_kpi", {"kpi": "mrr", "start": start, "end": end})
    tile("MRR vs plan", "lookup_kpi", {"kpi": "mrr_vs_plan", "start": start, "end": end})
    tile("Occupancy", "lookup_kpi", {"kpi": "occupancy_rate", "start": start, "end": end})
    tile("Active members", "lookup_kpi", {"kpi": "active_members", "start": start, "end": end})
    try:
        overdue = invoke(ctx, "find_invoices", {"status": "overdue"})
        tiles.append(("Overdue A/R", overdue.summary[:120]))
        sections.append(("Overdue invoices", [
            f"{blocks.escape(r.number or '')} {blocks.escape(r.member)} "
            f"({r.due_date}) {format_cents(r.due_cents)}"
            for r in overdue.invoices[:8]]))
    except ToolError as exc:
        tiles.append(("Overdue A/R", str(exc)[:60]))
    try:
        from finance import approvals

        with deps.services.session() as session:
            waiting = approvals.pending_for(session, actor, now=deps.services.clock(),
                                            policy=approvals.policy_of(deps.services))
        sections.append(("Waiting for your approval", [
            f"Bill {blocks.escape(b.number)} from {blocks.escape(b.vendor)}: "
            f"{format_cents(b.amount_cents)}" for b in waiting]))
    except Exception:  # a role without approvals sees the rest of the dashboard
        log.debug("no approvals section for %s", user_id, exc_info=True)
    try:
        from finance.anomalies import list_anomalies

        with deps.services.session() as session:
            open_rows = list_anomalies(session, status="open")
        sections.append(("Open anomalies", [
            f"{blocks.escape(r.kind)}: {blocks.escape(r.reason[:140])}" for r in open_rows]))
    except Exception:
        log.debug("no anomalies section", exc_info=True)
    return blocks.build_home(tiles, sections, as_of=end)


def register(app: App, deps: SlackDeps) -> None:
    @app.event("app_home_opened")
    def handle_home_opened(event: dict[str, Any], body: dict[str, Any],
                           client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        deps.before_work()
        view = build_dashboard(deps, event["user"], body.get("team_id"))
        client.views_publish(user_id=event["user"], view=view)
