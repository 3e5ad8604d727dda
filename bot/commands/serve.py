"""`deskbooks serve`: the Slack app over HTTP (or Socket Mode), the usage hook, health checks."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from bot.cli import UsageError, _services, app, handle_errors

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
    from bot.slack.app import SlackConfigError, build_app
    from bot.slack.server import make_wsgi_app, serve_http

    services = _services()
    try:
        bolt = build_app(services)
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
            serve_http(make_wsgi_app(services, bolt), port, host)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
