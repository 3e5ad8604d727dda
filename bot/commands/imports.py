"""CLI: ``deskbooks import members|plans|subscriptions|payments|bank FILE`` and ``reconcile``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from finance.money import format_cents

from bot.cli import (
    AsOpt,
    JsonOpt,
    UsageError,
    _actor,
    _date,
    _emit,
    _services,
    app,
    handle_errors,
    import_app,
)
from finance.imports import ImportFileError, ImportReport

FileArg = Annotated[Path, typer.Argument(help="The CSV (or OFX/QFX) file to import.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate every row; write nothing.")]


def _finish(report: ImportReport, as_json: bool) -> None:
    """Print the report; a file with rejected rows exits with code 2 (nothing was written)."""
    _emit(report.as_dict(), as_json, report.text())
    if report.rejected:
        typer.echo(f"error: {len(report.rejected)} rows rejected; nothing imported", err=True)
        raise typer.Exit(2)


def _csv_import(kind: str, file: Path, as_user: str | None, dry_run: bool, as_json: bool,
                **options: Any) -> None:
    from finance.imports import IMPORTERS

    services = _services()
    actor = _actor(services, as_user)
    try:
        report = IMPORTERS[kind](services, actor, file, dry_run=dry_run, **options)
    except ImportFileError as exc:
        raise UsageError(f"{file.name}: {exc}") from None
    _finish(report, as_json)


@import_app.command("members")
@handle_errors
def import_members(file: FileArg, dry_run: DryRunOpt = False, as_user: AsOpt = None,
                   as_json: JsonOpt = False) -> None:
    """Members: code, name, kind, email, phone, tax_id, company, home_location, external_id,
    joined_on."""
    _csv_import("members", file, as_user, dry_run, as_json)


@import_app.command("plans")
@handle_errors
def import_plans(file: FileArg, dry_run: DryRunOpt = False, as_user: AsOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Plans: name, desk_type, price, location, code, interval, currency, deposit,
    included_meeting_minutes."""
    _csv_import("plans", file, as_user, dry_run, as_json)


@import_app.command("subscriptions")
@handle_errors
def import_subscriptions(file: FileArg, dry_run: DryRunOpt = False, as_user: AsOpt = None,
                         as_json: JsonOpt = False) -> None:
    """Subscriptions: member, plan, start_date, location, end_date, quantity, unit_price,
    billing_anchor_day."""
    _csv_import("subscriptions", file, as_user, dry_run, as_json)


@import_app.command("payments")
@handle_errors
def import_payments(
    file: FileArg,
    format: Annotated[str, typer.Option(
        "--format", help="generic (our layout), stripe (Dashboard payments export) or square "
                         "(transactions export).")] = "generic",
    location: Annotated[str | None, typer.Option(
        help="Location code for rows that name none (and whose member has no home).")] = None,
    dry_run: DryRunOpt = False,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Payments, posted through receivables (Dr cash/clearing, Cr A/R, allocated to invoices)."""
    if format not in ("generic", "stripe", "square"):
        raise UsageError("--format must be generic, stripe or square")
    _csv_import("payments", file, as_user, dry_run, as_json, format=format, location=location)


@import_app.command("bank")
@handle_errors
def import_bank(
    file: FileArg,
    account: Annotated[str | None, typer.Option(
        help="Bank account name (required for CSV; OFX defaults to BANKID:ACCTID).")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="ofx, qfx or csv (default: from the file).")] = None,
    mapping: Annotated[list[str] | None, typer.Option(
        help="CSV column mapping: key=Column (repeat; keys date, amount, debit, credit, payee, "
             "memo, id, balance, date_format, negate) or one YAML file path.")] = None,
    date_format: Annotated[str | None, typer.Option(
        "--date-format", help="CSV date format, e.g. %m/%d/%Y (default %Y-%m-%d).")] = None,
    currency: Annotated[str, typer.Option(help="CSV statement currency.")] = "USD",
    dry_run: DryRunOpt = False,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A bank statement (OFX/QFX or CSV) into the bank lines; re-imports add nothing."""
    from finance.bank import CsvMapping, import_bank as run_import

    services = _services()
    actor = _actor(services, as_user)
    try:
        csv_mapping = None
        if mapping:
            csv_mapping = CsvMapping.from_options(mapping)
            if date_format:
                csv_mapping = dataclasses.replace(csv_mapping, date_format=date_format)
        report = run_import(services, actor, file, account=account, format=format,
                            mapping=csv_mapping, currency=currency, dry_run=dry_run)
    except ImportFileError as exc:
        raise UsageError(f"{file.name}: {exc}") from None
    if not as_json:
        for st in report.extra.get("statements", []):
            bal = st["ledger_balance_cents"]
            typer.echo(f"{st['account']} ({st['currency']}): {st['transactions']} transactions, "
                       f"net {format_cents(st['total_cents'], st['currency'])}"
                       + (f", ledger balance {format_cents(bal, st['currency'])} "
                          f"on {st['balance_as_of']}"
                          if bal is not None else ", no ledger balance"))
    _finish(report, as_json)


@app.command("reconcile")
@handle_errors
def reconcile(
    account: Annotated[str, typer.Option(help="Bank account name, as imported.")],
    start: Annotated[str | None, typer.Option(help="First bank date YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last bank date YYYY-MM-DD.")] = None,
    window: Annotated[int, typer.Option(
        min=0, max=60, help="Days a bank line may post after the book date.")] = 5,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Match and report; record no matches and post no payouts.")] = False,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Match bank lines to payments, payouts, bills and expenses; list what is unmatched."""
    from finance.bank import ReconcileError, reconcile as run

    services = _services()
    actor = _actor(services, as_user)
    try:
        report = run(services, actor, account, _date(start, "--start") if start else None,
                     _date(end, "--end") if end else None, window_days=window, dry_run=dry_run)
    except ReconcileError as exc:
        raise UsageError(str(exc)) from None
    _emit(report.as_dict(), as_json, report.summary_text)
