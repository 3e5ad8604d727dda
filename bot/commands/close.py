"""`deskbooks close YYYY-MM`: the month-end checklist, then the period lock."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli import AsOpt, JsonOpt, UsageError, _actor, _emit, _services, app, handle_errors


@app.command("close")
@handle_errors
def close(
    period: Annotated[str, typer.Argument(help="The month to close, YYYY-MM.")],
    check_only: Annotated[bool, typer.Option("--check", help="Report only; do not lock.")]
    = False,
    skip: Annotated[list[str] | None, typer.Option(
        "--skip", help="Waive a check (drafts, receipts, recognition, bank, anomalies).")] = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the close checklist (drafts, receipts, recognition, bank, anomalies) and lock."""
    from finance.close import close_period

    services = _services()
    actor = _actor(services, as_user)
    try:
        report = close_period(services, actor, period, lock=not check_only,
                              skip=frozenset(skip or ()))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _emit(report.as_dict(), as_json, report.summary_text())
    if not report.ready:
        raise typer.Exit(2)
