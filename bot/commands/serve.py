"""`deskbooks serve`: the Slack app over HTTP (or Socket Mode), the usage hook, health checks."""

from __future__ import annotations

import logging
import re
from typing import Annotated

import typer
from sqlalchemy import select

from bot.cli import JsonOpt, UsageError, _emit, _services, app, handle_errors
from finance import audit
from finance.authz import Actor, require_role
from finance.models import Location, Role, SlackUser
from finance.services import Services

log = logging.getLogger("deskbooks.serve")


@app.command()
@handle_errors
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    socket: Annotated[bool, typer.Option("--socket", help="Socket Mode (SLACK_APP_TOKEN).")]
    = False,
    no_scheduler: Annotated[bool, typer.Option(
        "--no-scheduler", help="Do not run the scheduled jobs in this process.")] = False,
) -> None:
    """Run the Slack app: /slack/events, /hooks/usage and /healthz (or Socket Mode)."""
    from bot.slack.app import AckGate, SlackConfigError, build_app
    from bot.slack.server import make_wsgi_app, serve_http

    services = _services()
    gate = None if socket else AckGate()
    try:
        bolt = build_app(services, gate=gate)
    except SlackConfigError as exc:
        raise UsageError(str(exc)) from None
    scheduler = None
    if not no_scheduler:
        from bot.jobs import start_scheduler

        scheduler = start_scheduler(services, slack_client=bolt.client)
    try:
        if socket:
            token = services.settings.slack_app_token
            if token is None:
                raise UsageError("--socket needs SLACK_APP_TOKEN (an xapp- token with "
                                 "connections:write)")
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            typer.echo("deskbooks: Socket Mode connected; Ctrl-C stops")
            SocketModeHandler(bolt, token.get_secret_value()).start()
        else:
            typer.echo(f"deskbooks: listening on http://{host}:{port} "
                       "(/slack/events, /hooks/usage, /healthz)")
            serve_http(make_wsgi_app(services, bolt, gate=gate), port, host)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


# --------------------------------------------------------------------------- Slack users

slack_user_app = typer.Typer(help="Who may use the Slack app, and with which role.",
                             no_args_is_help=True)
app.add_typer(slack_user_app, name="slack-user")

ROLES = ", ".join(r.value for r in Role)


def set_slack_user(services: Services, actor: Actor, *, team_id: str, user_id: str, name: str,
                   role: str, location: str | None = None, active: bool = True) -> SlackUser:
    """Add a Slack user with a role, or change one (admins only; audited)."""
    try:
        role_value = Role(role.strip().lower()).value
    except ValueError:
        raise UsageError(f"unknown role {role!r}; choose one of {ROLES}") from None
    for label, value, pattern in (("team id", team_id, r"[TE][A-Z0-9]{2,19}"),
                                  ("user id", user_id, r"[UW][A-Z0-9]{2,19}")):
        if not re.fullmatch(pattern, value):
            raise UsageError(f"{value!r} is not a Slack {label} (like "
                             f"{'T0123ABCD' if label == 'team id' else 'U0123ABCD'})")
    if not name.strip():
        raise UsageError("give the person's name (--name)")
    with services.session() as session:
        require_role(session, actor, {Role.ADMIN}, "manage Slack users")
        location_id = None
        if location:
            location_id = session.execute(select(Location.id).where(
                Location.code == location.strip().upper())).scalar_one_or_none()
            if location_id is None:
                raise UsageError(f"no location {location!r}")
        row = session.execute(select(SlackUser).where(
            SlackUser.team_id == team_id, SlackUser.user_id == user_id)).scalar_one_or_none()
        before = None if row is None else {"role": row.role, "active": row.active}
        if row is None:
            row = SlackUser(team_id=team_id, user_id=user_id, name=name.strip()[:120],
                            role=role_value)
        row.name, row.role, row.location_id, row.active = (name.strip()[:120], role_value,
                                                           location_id, active)
        session.add(row)
        session.flush()
        audit.record(session, actor=actor.label, action="slack_user.set",
                     entity_type="slack_user", entity_id=row.id,
                     details={"team_id": team_id, "user_id": user_id, "role": role_value,
                              "location_id": location_id, "active": active,
                              "before": before})
        return row


@slack_user_app.command("add")
@handle_errors
def slack_user_add(
    user_id: Annotated[str, typer.Argument(help="Slack member id (U… or W…).")],
    team: Annotated[str, typer.Option(help="Workspace id (T…).")],
    name: Annotated[str, typer.Option(help="The person's name.")],
    role: Annotated[str, typer.Option(help=f"One of: {ROLES}.")],
    location: Annotated[str | None, typer.Option(help="Home location code (e.g. DT).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a Slack user with a role (or change an existing one's role and location)."""
    row = set_slack_user(_services(), Actor.system("cli"), team_id=team, user_id=user_id,
                         name=name, role=role, location=location)
    _emit({"team_id": row.team_id, "user_id": row.user_id, "name": row.name, "role": row.role,
           "location_id": row.location_id}, as_json,
          f"{row.name} ({row.team_id}/{row.user_id}) is {row.role}")


@slack_user_app.command("remove")
@handle_errors
def slack_user_remove(
    user_id: Annotated[str, typer.Argument(help="Slack member id (U… or W…).")],
    team: Annotated[str, typer.Option(help="Workspace id (T…).")],
) -> None:
    """Deactivate a Slack user (kept for the audit trail; they can no longer do anything)."""
    services = _services()
    with services.session() as session:
        row = session.execute(select(SlackUser).where(
            SlackUser.team_id == team, SlackUser.user_id == user_id)).scalar_one_or_none()
        if row is None:
            raise UsageError(f"no Slack user {team}/{user_id}")
        name, role = row.name, row.role
    set_slack_user(services, Actor.system("cli"), team_id=team, user_id=user_id, name=name,
                   role=role, active=False)
    typer.echo(f"{name} ({team}/{user_id}) deactivated")


@slack_user_app.command("list")
@handle_errors
def slack_user_list(as_json: JsonOpt = False) -> None:
    """Everyone the Slack app knows, with their role."""
    services = _services()
    with services.session() as session:
        codes = {loc_id: code for loc_id, code in session.execute(
            select(Location.id, Location.code))}
        rows = [{"team_id": u.team_id, "user_id": u.user_id, "name": u.name, "role": u.role,
                 "location": codes.get(u.location_id), "active": u.active}
                for u in session.execute(select(SlackUser).order_by(
                    SlackUser.team_id, SlackUser.user_id)).scalars()]
    text = "\n".join(f"{r['team_id']}/{r['user_id']}  {r['role']:<8} {r['name']}"
                     + (f" @{r['location']}" if r["location"] else "")
                     + ("" if r["active"] else " (inactive)") for r in rows)
    _emit({"users": rows}, as_json, text or "no Slack users yet: add one with "
          "`deskbooks slack-user add`")
