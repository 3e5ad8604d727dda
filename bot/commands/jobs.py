"""`deskbooks scheduler` (the one scheduler process) and `deskbooks jobs run NAME`."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from bot.cli import JsonOpt, TodayOpt, UsageError, _clock, _services, app, handle_errors

jobs_app = typer.Typer(help="Scheduled jobs: run one now, or list them.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@app.command()
@handle_errors
def scheduler() -> None:
    """Run the scheduled jobs (one process per space; jobs are idempotent anyway)."""
    from bot.jobs import build_scheduler

    services = _services()
    sched = build_scheduler(services)
    typer.echo("deskbooks scheduler running; Ctrl-C stops. Jobs: "
               + ", ".join(job.id for job in sched.get_jobs()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sched.shutdown(wait=False)


@jobs_app.command("run")
@handle_errors
def jobs_run(
    name: Annotated[str, typer.Argument(help="billing_monthly, revenue_recognition, dunning, "
                                             "anomaly_scan, kpi_digest or backup")],
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one job now (idempotent: a second run for the same day or month does nothing)."""
    from bot.jobs import JOBS, NullNotifier, SlackNotifier

    if name not in JOBS:
        raise UsageError(f"unknown job {name!r}; choose from {', '.join(JOBS)}")
    services = _services(today)
    notifier = NullNotifier()
    token = services.settings.slack_bot_token
    if token is not None:
        from slack_sdk import WebClient

        notifier = SlackNotifier(WebClient(token=token.get_secret_value(),
                                           base_url=services.settings.slack_api_url))
    result = JOBS[name](services, notifier, _clock(today)())
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else
               f"{name}: " + ", ".join(f"{k}={v}" for k, v in result.items()))


@jobs_app.command("list")
@handle_errors
def jobs_list(as_json: JsonOpt = False) -> None:
    """The schedule of every job."""
    from bot.jobs import SCHEDULE

    rows = [{"id": k, "trigger": v[0], "misfire_grace_s": v[1]} for k, v in SCHEDULE.items()]
    typer.echo(json.dumps(rows, indent=2) if as_json else
               "\n".join(f"{r['id']:<22} {r['trigger']}" for r in rows))
