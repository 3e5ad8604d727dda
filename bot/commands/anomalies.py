"""``deskbooks anomalies``: scan the books for the problems of DESIGN §5 and triage findings."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from bot.cli import (
    AsOpt,
    JsonOpt,
    TodayOpt,
    _actor,
    _date,
    _emit,
    _services,
    app,
    handle_errors,
    user_errors,
)
from finance.anomalies import (
    KINDS,
    AnomalyError,
    AnomalyView,
    Finding,
    list_anomalies,
    scan,
    set_status,
)
from finance.money import format_cents

anomalies_app = typer.Typer(help="Anomalies: scan the books, list findings, dismiss or resolve.",
                            no_args_is_help=True)
app.add_typer(anomalies_app, name="anomalies")

DEFAULT_DAYS = 365
IdArg = Annotated[int, typer.Argument(help="Finding id (see `deskbooks anomalies list`).", min=1)]
KindOpt = Annotated[list[str] | None, typer.Option(
    "--kind", help=f"Only this kind (repeatable): {', '.join(KINDS)}.")]
LocationOpt = Annotated[str | None, typer.Option(help="Only this location code (e.g. DT).")]


user_errors(AnomalyError)  # the service's refusals print as one line (exit code 2)


def _amount(cents: int | None) -> str:
    return format_cents(cents) if cents is not None else "-"


def _finding_line(f: Finding, anomaly_id: int | None, status: str | None) -> str:
    head = (f"#{anomaly_id or '?':<5} {f.severity.value:<6} {f.kind:<22} "
            f"{_amount(f.amount_cents):>12}")
    tail = f"  [{status}]" if status and status != "open" else ""
    return f"{head}{tail}\n       {f.reason}"


def _view_line(a: AnomalyView) -> str:
    line = (f"#{a.id:<5} {a.severity:<6} {a.kind:<22} {_amount(a.amount_cents):>12}  "
            f"{a.status}\n       {a.reason}")
    if a.status != "open":
        line += f"\n       {a.status} by {a.status_by} at {a.status_at:%Y-%m-%d %H:%M} UTC" \
            if a.status_at else ""
        if a.status_note:
            line += f": {a.status_note}"
    return line


@anomalies_app.command("scan")
@handle_errors
def scan_command(
    start: Annotated[str | None, typer.Option(
        help=f"First day YYYY-MM-DD (default: {DEFAULT_DAYS} days before --end).")] = None,
    end: Annotated[str | None, typer.Option(help="Last day YYYY-MM-DD (default: today).")] = None,
    location: LocationOpt = None,
    kind: KindOpt = None,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every detector over a date range; new findings are stored, known ones not repeated."""
    services = _services(today)
    last = _date(end, "--end") if end else services.today()
    first = _date(start, "--start") if start else last - timedelta(days=DEFAULT_DAYS)
    report = scan(services, _actor(services, as_user), start=first, end=last,
                  location=location, kinds=kind)
    lines = [f"scanned {first} to {last}" + (f" at {location}" if location else "")
             + f": {len(report.findings)} findings ({report.new} new, "
             f"{report.existing} already known)"]
    for f in report.findings:
        lines.append(_finding_line(f, report.anomaly_ids.get(f.fingerprint),
                                   report.statuses.get(f.fingerprint)))
    _emit(report.as_dict(), as_json, "\n".join(lines))


@anomalies_app.command("list")
@handle_errors
def list_command(
    status: Annotated[str | None, typer.Option(
        help="open, dismissed or resolved (default: all).")] = None,
    location: LocationOpt = None,
    kind: KindOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List stored findings, most severe first."""
    services = _services()
    with services.session() as session:
        rows = list_anomalies(session, status=status, location=location, kinds=kind)
    text = "\n".join(_view_line(a) for a in rows) if rows else "no findings"
    _emit({"anomalies": [a.as_dict() for a in rows]}, as_json, text)


@anomalies_app.command("dismiss")
@handle_errors
def dismiss_command(
    anomaly_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why this is not a problem (required).")],
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Dismiss a finding (not a problem); rescans will not raise it again."""
    services = _services()
    view = set_status(services, _actor(services, as_user), anomaly_id, "dismissed", reason)
    _emit(view.as_dict(), as_json, f"finding #{view.id} dismissed: {view.status_note}")


@anomalies_app.command("resolve")
@handle_errors
def resolve_command(
    anomaly_id: IdArg,
    note: Annotated[str | None, typer.Option(help="What was done (optional).")] = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark a finding resolved (the problem was fixed)."""
    services = _services()
    view = set_status(services, _actor(services, as_user), anomaly_id, "resolved", note)
    _emit(view.as_dict(), as_json, f"finding #{view.id} resolved"
          + (f": {view.status_note}" if view.status_note else ""))


@anomalies_app.command("reopen")
@handle_errors
def reopen_command(
    anomaly_id: IdArg,
    note: Annotated[str | None, typer.Option(help="Why it is open again (optional).")] = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open a dismissed or resolved finding again."""
    services = _services()
    view = set_status(services, _actor(services, as_user), anomaly_id, "open", note)
    _emit(view.as_dict(), as_json, f"finding #{view.id} is open again")
