"""Exports for QuickBooks Online and Xero, compliance reports, backup and restore."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from bot.cli import (
    AsOpt,
    JsonOpt,
    TodayOpt,
    UsageError,
    _actor,
    _date,
    _emit,
    _services,
    app,
    export_app,
    handle_errors,
)
from finance.money import format_cents

StartOpt = Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last day, YYYY-MM-DD.")]
OutOpt = Annotated[Path, typer.Option("--out", help="File to write.")]


def _range(start: str | None, end: str | None) -> tuple[date | None, date | None]:
    first = _date(start, "--start") if start else None
    last = _date(end, "--end") if end else None
    if first and last and last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    return first, last


def _export(kind: str, out: Path, start: str | None, end: str | None, as_json: bool,
            **options: str) -> None:
    from finance import exports

    first, last = _range(start, end)
    services = _services()
    try:
        with services.session() as session:
            if kind == "quickbooks":
                report = exports.export_quickbooks(session, out, start=first, end=last)
            elif kind == "xero":
                report = exports.export_xero(session, out, start=first, end=last, **options)
            else:
                report = exports.export_invoices(session, out, start=first, end=last)
    except exports.ExportError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    files = [str(p) for p in report.files]
    what = "invoices" if kind == "invoices" else f"journal entries ({report.lines} lines)"
    _emit({"files": files, "entries": report.entries, "lines": report.lines}, as_json,
          f"wrote {report.entries} {what} to {', '.join(files)}")


@export_app.command("quickbooks")
@handle_errors
def export_quickbooks(out: OutOpt, start: StartOpt = None, end: EndOpt = None,
                      as_json: JsonOpt = False) -> None:
    """QuickBooks Online journal-entry import CSV (MM/DD/YYYY, accounts by name)."""
    _export("quickbooks", out, start, end, as_json)


@export_app.command("xero")
@handle_errors
def export_xero(
    out: OutOpt, start: StartOpt = None, end: EndOpt = None,
    tax_rate: Annotated[str, typer.Option(help="Xero tax rate name for journal lines.")]
    = "Tax Exempt",
    as_json: JsonOpt = False,
) -> None:
    """Xero manual-journal import CSV (dd/mm/yyyy, account codes; split every 300 lines)."""
    _export("xero", out, start, end, as_json, tax_rate=tax_rate)


@export_app.command("invoices")
@handle_errors
def export_invoices(out: OutOpt, start: StartOpt = None, end: EndOpt = None,
                    as_json: JsonOpt = False) -> None:
    """Issued invoices with totals, payments and the balance due."""
    _export("invoices", out, start, end, as_json)


# --------------------------------------------------------------------------- reports

report_app = typer.Typer(help="Compliance reports: 1099-NEC and sales tax.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("1099")
@handle_errors
def report_1099(
    year: Annotated[int, typer.Option(help="Tax year.")],
    out: Annotated[Path | None, typer.Option("--out", help="Also write a CSV here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Contractors paid in a year (card payments excluded), who is reportable, missing TINs."""
    from finance import reports

    services = _services()
    try:
        policy = reports.load_1099_policy(services.settings.knowledge_path)
        with services.session() as session:
            rep = reports.report_1099(session, year, policy)
    except reports.ReportError as exc:
        raise UsageError(str(exc)) from None
    rows = [
        {"vendor": c.name, "tin": c.tin, "paid_cents": c.paid_cents, "card_cents": c.card_cents,
         "payments": c.payments, "reportable": c.reportable, "missing_tin": c.missing_tin}
        for c in rep.contractors
    ]
    if out is not None:
        _write_csv(out, rows)
    lines = [f"1099-NEC {year}: threshold {format_cents(rep.threshold_cents)}, "
             f"{len(rep.reportable)} reportable, {len(rep.missing_tin)} missing a TIN"]
    for c in rep.contractors:
        flag = "REPORT" if c.reportable else "below"
        tin = c.tin or ("MISSING TIN" if c.missing_tin else "no TIN")
        lines.append(f"  {flag:<6} {c.name:<32} {format_cents(c.paid_cents):>12}  {tin}"
                     + (f"  (card {format_cents(c.card_cents)} excluded)" if c.card_cents else ""))
    _emit({"year": year, "threshold_cents": rep.threshold_cents, "contractors": rows},
          as_json, "\n".join(lines))


@report_app.command("sales-tax")
@handle_errors
def report_sales_tax(
    start: Annotated[str, typer.Option("--start", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="Last day, YYYY-MM-DD.")],
    location: Annotated[str | None, typer.Option(help="Location code or name.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write a CSV here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Tax charged by location and line kind, less credit notes and voids; ledger check."""
    from finance import reports

    first, last = _range(start, end)
    assert first is not None and last is not None
    services = _services()
    try:
        with services.session() as session:
            rep = reports.sales_tax_report(session, first, last, location=location)
    except reports.ReportError as exc:
        raise UsageError(str(exc)) from None
    rows = [
        {"location": r.location, "line_kind": r.line_kind, "taxable_cents": r.taxable_cents,
         "untaxed_cents": r.untaxed_cents, "tax_cents": r.tax_cents}
        for r in rep.rows
    ]
    if out is not None:
        _write_csv(out, rows)
    locations = [
        {"location": loc.location, "currency": loc.currency,
         "tax_charged_cents": loc.tax_charged_cents, "tax_refunded_cents": loc.tax_refunded_cents,
         "tax_voided_cents": loc.tax_voided_cents, "net_tax_cents": loc.net_tax_cents,
         "ledger_movement_cents": loc.ledger_movement_cents,
         "remitted_cents": loc.remitted_cents,
         "matches_ledger": loc.net_tax_cents == loc.ledger_movement_cents}
        for loc in rep.locations
    ]
    text = [f"sales tax {first} .. {last}"]
    for r in rep.rows:
        text.append(f"  {r.location:<12} {r.line_kind:<16} taxable {format_cents(r.taxable_cents):>12}"
                    f"  tax {format_cents(r.tax_cents):>10}")
    for loc in locations:
        check = "matches the ledger" if loc["matches_ledger"] else (
            f"ledger shows {format_cents(loc['ledger_movement_cents'])}")
        text.append(f"  {loc['location']}: net tax {format_cents(loc['net_tax_cents'])} ({check})")
    _emit({"start": first, "end": last, "rows": rows, "locations": locations}, as_json,
          "\n".join(text))


def _write_csv(out: Path, rows: list[dict[str, object]]) -> None:
    import csv

    try:
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["none"])
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None


# --------------------------------------------------------------------------- backup


@app.command("backup")
@handle_errors
def backup_cmd(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Backup file (default: <data dir>/backups/deskbooks-<time>.*).")] = None,
    today: TodayOpt = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A consistent backup: SQLite online backup, or pg_dump for PostgreSQL."""
    from finance import audit, backup
    from finance.authz import FINANCE_WRITERS, require_role

    services = _services(today)
    actor = _actor(services, as_user)
    with services.session() as session:
        require_role(session, actor, FINANCE_WRITERS, "take backups")
    target = out or services.settings.data_dir / "backups" / backup.default_backup_name(
        services.engine, services.clock())
    try:
        result = backup.backup(services.engine, target)
    except backup.BackupError as exc:
        raise UsageError(str(exc)) from None
    with services.session() as session:
        audit.record(session, actor=actor.label, action="backup.create", entity_type="backup",
                     entity_id=None, details={"file": result.path.name, "bytes": result.bytes})
    _emit({"file": str(result.path), "backend": result.backend, "bytes": result.bytes},
          as_json, f"backup written to {result.path} ({result.bytes:,} bytes)")


@app.command("restore")
@handle_errors
def restore_cmd(
    file: Annotated[Path, typer.Argument(help="A file written by `deskbooks backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Really replace the current books.")]
    = False,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace the current database with a backup (asks for --yes)."""
    from finance import backup
    from finance.authz import Role, require_role

    if not yes:
        raise UsageError("restore replaces every record in the current books; "
                         "run again with --yes to go ahead")
    services = _services(init=False)
    actor = _actor(services, as_user)
    if not actor.is_system:
        with services.session() as session:
            require_role(session, actor, {Role.ADMIN}, "restore backups")
    try:
        result = backup.restore(services.engine, file)
    except backup.BackupError as exc:
        raise UsageError(str(exc)) from None
    _emit({"restored": str(result.path), "backend": result.backend}, as_json,
          f"restored the books from {result.path}")
