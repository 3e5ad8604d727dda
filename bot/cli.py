"""The ``deskbooks`` command line: parse, build services, call one service, print, map errors."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import func, select

from finance import db, ledger
from finance.authz import Actor, NotAuthorized
from finance.billing import BillingError
from finance.db import StoreError
from finance.models import Member
from finance.money import MoneyError, format_cents
from finance.proration import ProrationError
from finance.services import Services, build_services
from finance.settings import ConfigError, Settings, load_settings
from finance.tax import TaxError

log = logging.getLogger("deskbooks.cli")

app = typer.Typer(
    name="deskbooks",
    help="deskbooks: bookkeeping for co-working spaces (ledger, billing, receipts, Slack).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(help="Export the books to other tools.", no_args_is_help=True)
billing_app = typer.Typer(help="Billing runs: draft, approve and issue invoices.",
                          no_args_is_help=True)
app.add_typer(billing_app, name="billing")
ledger_app = typer.Typer(help="Inspect the ledger.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(ledger_app, name="ledger")
import_app = typer.Typer(help="Import data from CSV, OFX and other tools (all-or-nothing per file).",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Act as this Slack user id (their role in the store applies)."),
]
TodayOpt = Annotated[
    str | None, typer.Option("--today", help="Pretend today is YYYY-MM-DD (reproducible runs).")
]

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(Exception):
    """Bad command-line input, reported without a traceback."""


_USER_ERRORS: list[type[Exception]] = [
    ConfigError, StoreError, ledger.LedgerError, MoneyError, UsageError, BillingError,
    ProrationError, NotAuthorized, TaxError,
]


def user_errors(*types: type[Exception]) -> None:
    """Declare a service's refusals (messages written for people) one-line errors for every
    command; command modules call it once for the exceptions their services raise."""
    _USER_ERRORS.extend(t for t in types if t not in _USER_ERRORS)


def handle_errors(fn: F) -> F:
    """Map expected failures to a one-line message and exit code 2; hide tracebacks."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except tuple(_USER_ERRORS) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("unexpected error (ref %s)", ref)
            typer.echo(
                f"error: something went wrong (ref {ref}); run with DESKBOOKS_LOG_LEVEL=DEBUG "
                "for details",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def _clock(today: str | None) -> Callable[[], datetime]:
    if today is None:
        return lambda: datetime.now(UTC)
    try:
        fixed = datetime.combine(date.fromisoformat(today), time(12), tzinfo=UTC)
    except ValueError:
        raise UsageError(f"--today must be YYYY-MM-DD, got {today!r}") from None
    return lambda: fixed


def _services(today: str | None = None, *, init: bool = True) -> Services:
    services = build_services(_settings(), clock=_clock(today))
    db.ping(services.engine)
    if init and not db.schema_is_current(services.engine):
        services.init_schema()
    return services


def _actor(services: Services, as_user: str | None) -> Actor:
    """The local operator, or a Slack user whose role the services will check."""
    if as_user is None:
        return Actor.system("cli")
    from finance.models import SlackUser

    with services.session() as session:
        row = session.execute(
            select(SlackUser).where(SlackUser.user_id == as_user)
        ).scalars().first()
    return Actor(as_user, row.team_id if row else "unknown")


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be YYYY-MM-DD, got {value!r}") from None


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


# --------------------------------------------------------------------------- commands


@app.command()
@handle_errors
def init(as_json: JsonOpt = False) -> None:
    """Create or upgrade the database schema and load the chart of accounts."""
    services = _services(init=False)
    revision = services.init_schema()
    url = services.engine.url.render_as_string(hide_password=True)
    _emit({"database": url, "revision": revision}, as_json,
          f"schema at revision {revision} in {url}")


@app.command()
@handle_errors
def demo(
    members: Annotated[int, typer.Option(min=20, max=100_000, help="Members to generate.")] = 400,
    months: Annotated[int, typer.Option(min=4, max=60, help="Months of history.")] = 24,
    through: Annotated[
        str | None, typer.Option(help="Last full month YYYY-MM (default: last month).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same space).")] = 7,
    reset: Annotated[bool, typer.Option(help="Delete the SQLite demo database first.")] = False,
    no_chat: Annotated[bool, typer.Option("--no-chat", help="Only seed; do not open chat.")] = False,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Seed a deterministic sample space and print a summary of its books."""
    from finance import demo as demo_space
    from finance.summary import space_summary

    settings = _settings()
    if reset:
        _reset_sqlite(settings)
    services = _services(today)
    with services.session() as session:
        seeded = session.execute(select(func.count(Member.id))).scalar_one() > 0
    planted: list[dict[str, Any]] = []
    if seeded:
        typer.echo("The database already holds a space; showing its summary "
                   "(use --reset to rebuild the demo).", err=True)
    else:
        try:
            result = demo_space.seed_demo(
                services, members=members, months=months, through=through, seed=seed
            )
        except ValueError as exc:  # refusals (bad --through, too little history) are usage errors
            raise UsageError(str(exc)) from None
        planted = [{"kind": p.kind, "description": p.description} for p in result.planted]
    with services.session() as session:
        summary = space_summary(session, services.today())
    data = summary.as_dict() | {"planted_problems": planted}
    _emit(data, as_json, _render_summary(summary, planted))
    if no_chat or as_json:
        return
    if not sys.stdin.isatty():
        typer.echo("\nAsk the books anything: deskbooks ask \"what's our MRR vs plan?\" "
                   "(or run deskbooks chat)")
        return
    from bot.commands.assistant import run_chat

    typer.echo("")
    run_chat(services, Actor.system("cli"))


def _reset_sqlite(settings: Settings) -> None:
    url = settings.effective_database_url
    if not url.startswith("sqlite:///"):
        raise UsageError("--reset only deletes the embedded SQLite database; drop a "
                         "PostgreSQL database yourself")
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _render_summary(summary: Any, planted: list[dict[str, Any]]) -> str:
    lines = [
        f"deskbooks space as of {summary.as_of}",
        f"  locations            {summary.locations}",
        f"  members              {summary.members} ({summary.active_members} active)",
        f"  MRR                  {format_cents(summary.mrr_cents)}",
        f"  revenue {summary.last_month}      {format_cents(summary.revenue_last_month_cents)}",
        f"  accounts receivable  {format_cents(summary.accounts_receivable_cents)}"
        f" ({summary.open_invoices} open invoices)",
        f"  cash                 {format_cents(summary.cash_cents)}",
        f"  trial balance        debits {format_cents(summary.trial_balance_debits_cents)}"
        f" = credits {format_cents(summary.trial_balance_credits_cents)}"
        f" -> {'zero' if summary.trial_balance_zero else 'NOT ZERO'}",
    ]
    if planted:
        lines.append(f"  planted problems     {len(planted)} "
                     f"({', '.join(sorted({p['kind'] for p in planted}))})")
    return "\n".join(lines)


@app.command()
@handle_errors
def status(today: TodayOpt = None, as_json: JsonOpt = False) -> None:
    """Summarize the books: members, MRR, cash, A/R and the trial balance."""
    from finance.summary import space_summary

    services = _services(today)
    with services.session() as session:
        summary = space_summary(session, services.today())
    _emit(summary.as_dict(), as_json, _render_summary(summary, []))


@export_app.command("beancount")
@handle_errors
def export_beancount(
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    as_json: JsonOpt = False,
) -> None:
    """Write the ledger as Beancount text (checked by bean-check)."""
    from finance.export_beancount import export_beancount as write

    services = _services()
    with services.session() as session:
        count = write(session, out)
    _emit({"out": str(out), "transactions": count}, as_json,
          f"wrote {count} transactions to {out}")


@ledger_app.command("trial-balance")
@handle_errors
def trial_balance(
    as_of: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: all)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print every account's balance; debits and credits must be equal."""
    services = _services()
    day = None
    if as_of:
        try:
            day = date.fromisoformat(as_of)
        except ValueError:
            raise UsageError(f"--as-of must be YYYY-MM-DD, got {as_of!r}") from None
    with services.session() as session:
        tb = ledger.trial_balance(session, as_of=day)
    rows = [
        {"code": r.code, "name": r.name, "type": r.type, "currency": r.currency,
         "balance_cents": r.balance_cents}
        for r in tb.rows
    ]
    text_lines = [f"{r.code}  {r.name:<42} {format_cents(r.balance_cents):>16}" for r in tb.rows]
    text_lines.append(
        f"debits {format_cents(tb.total_debits)}  credits {format_cents(tb.total_credits)}  "
        f"{'balanced' if tb.is_balanced else 'NOT BALANCED'}"
    )
    _emit({"rows": rows, "total_debits_cents": tb.total_debits,
           "total_credits_cents": tb.total_credits, "balanced": tb.is_balanced},
          as_json, "\n".join(text_lines))


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()


# --------------------------------------------------------------------------- billing


def _engine(services: Services) -> Any:
    from finance.billing import BillingEngine, BillingPolicy

    return BillingEngine(services.chart, BillingPolicy.from_settings(services.settings))


def _render_run(summary: dict[str, Any]) -> str:
    if summary["already_run"]:
        return f"billing for {summary['period']} ({summary['scope']}) already ran; nothing new"
    head = "would create" if summary["dry_run"] else "created"
    lines = [f"{head} {summary['invoices']} draft invoices for {summary['period']} "
             f"({summary['scope']}): subtotal {format_cents(summary['subtotal_cents'])}, "
             f"tax {format_cents(summary['tax_cents'])}, total {format_cents(summary['total_cents'])}"]
    for kind, cents in summary["by_line_kind_cents"].items():
        lines.append(f"  {kind:<16} {format_cents(cents):>14}")
    return "\n".join(lines)


@billing_app.command("run")
@handle_errors
def billing_run(
    period: Annotated[str, typer.Option(help="Billing month YYYY-MM.")],
    location: Annotated[str | None, typer.Option(help="Only this location code.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Preview; write nothing.")] = False,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Draft the period's invoices (plan charges, prorations, usage, deposits, tax)."""
    services = _services()
    actor = _actor(services, as_user)
    with services.session() as session:
        result = _engine(services).run(session, period, actor=actor, location_code=location,
                                       dry_run=dry_run)
    summary = result.summary()
    _emit(summary, as_json, _render_run(summary))


@billing_app.command("issue")
@handle_errors
def billing_issue(
    period: Annotated[str, typer.Option(help="Billing month YYYY-MM.")],
    on: Annotated[str | None, typer.Option(help="Issue date (default: today).")] = None,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve and issue every draft invoice of a period (numbers, postings, member credit)."""
    from finance.models import Invoice, InvoiceStatus

    services = _services(today)
    actor = _actor(services, as_user)
    issue_on = _date(on, "--on") if on else services.today()
    engine = _engine(services)
    with services.session() as session:
        ids = list(session.execute(
            select(Invoice.id).where(Invoice.period == period, Invoice.status.in_(
                [InvoiceStatus.DRAFT, InvoiceStatus.APPROVED]))  # type: ignore[attr-defined]
            .order_by(Invoice.id)).scalars())
        engine.approve(session, ids, actor=actor)
        issued = engine.issue(session, ids, actor=actor, on=issue_on)
        numbers = [n for n in session.execute(
            select(Invoice.number).where(Invoice.id.in_(issued)).order_by(Invoice.id)  # type: ignore[union-attr]
        ).scalars()] if issued else []
    data = {"period": period, "issued": len(issued),
            "first_number": numbers[0] if numbers else None,
            "last_number": numbers[-1] if numbers else None}
    text = (f"issued {len(issued)} invoices for {period}"
            + (f" ({numbers[0]} … {numbers[-1]})" if numbers else ""))
    _emit(data, as_json, text)


def _render_breakdown(title: str, rows: list[dict[str, str]], net: int, tax: int) -> str:
    lines = [title]
    for row in rows:
        lines.append(f"  {row['description']:<48} {row['service_start']}..{row['service_end']}"
                     f"  {row['days']:>7}/{row['period_days']:<7} {row['amount']:>10}"
                     f"  tax {row['tax']:>8}  = {row['total']:>10}")
    lines.append(f"  net {format_cents(net)}, tax {format_cents(tax)}, "
                 f"total {format_cents(net + tax)}")
    return "\n".join(lines)


def _write_csv(path: Path | None, text: str) -> None:
    if path is not None:
        path.write_text(text, encoding="utf-8")


@app.command()
@handle_errors
def quote(
    member: Annotated[str, typer.Option(help="Member code or name.")],
    to_plan: Annotated[str, typer.Option("--to-plan", help="Plan code or name.")],
    on: Annotated[str, typer.Option(help="First day on the new plan, YYYY-MM-DD.")],
    quantity: Annotated[int | None, typer.Option(min=1, help="New quantity.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the schedule as CSV.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Quote a plan change from the member's real subscription (equals the next invoice)."""
    from finance.billing import BillingPolicy
    from finance.subscriptions import quote_change

    services = _services()
    with services.session() as session:
        q = quote_change(session, member=member, to_plan=to_plan, on=_date(on, "--on"),
                         policy=BillingPolicy.from_settings(services.settings),
                         quantity=quantity)
    _write_csv(csv_out, q.proration.to_csv())
    title = (f"{q.member_name} ({q.member_code}): {q.from_plan} -> {q.to_plan} × {q.quantity}, "
             f"{q.direction} effective {q.effective} [{q.proration.rule}]")
    if not q.proration.lines:
        title += "\n  no proration: the change takes effect at the period end"
    _emit(q.as_dict(), as_json, _render_breakdown(title, q.proration.to_rows(),
                                                  q.proration.net_cents, q.proration.tax_cents))


def _moment(value: str, option: str) -> date | datetime:
    try:
        if "T" in value:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise UsageError(f"{option}: a timestamp needs a zone, e.g. {value}Z")
            return moment
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} must be YYYY-MM-DD or an ISO timestamp, got {value!r}") from None


@app.command()
@handle_errors
def prorate(
    price: Annotated[str, typer.Option(help="Current price per period, e.g. 600.00.")],
    period_start: Annotated[str, typer.Option("--period-start")],
    period_end: Annotated[str, typer.Option(
        "--period-end", help="Last day (inclusive) or, as a timestamp, the exclusive end.")],
    change: Annotated[str, typer.Option(help="Change date (first day on the new plan) or instant.")],
    new_price: Annotated[str | None, typer.Option(
        "--new-price", help="New plan price; omit to price the remaining part only.")] = None,
    quantity: Annotated[int, typer.Option(min=1)] = 1,
    new_quantity: Annotated[int | None, typer.Option("--new-quantity", min=1)] = None,
    rule: Annotated[str, typer.Option(
        help="actual_days | kill_bill | per_second | thirty_day")] = "actual_days",
    tax_rate: Annotated[str | None, typer.Option("--tax-rate", help="Percent, e.g. 8.875.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the schedule as CSV.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A proration calculator: credit for the unused old plan, charge for the new one, tax, net."""
    from finance import proration as pr
    from finance.money import parse_amount

    if rule not in pr.RULES:
        raise UsageError(f"--rule must be one of {', '.join(pr.RULES)}")
    start, end, moment = (_moment(period_start, "--period-start"),
                          _moment(period_end, "--period-end"), _moment(change, "--change"))
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise UsageError("--period-start and --period-end must both be dates or both timestamps")
    period: Any = (pr.InstantPeriod(start, end) if isinstance(start, datetime)  # type: ignore[arg-type]
                   else pr.BillingPeriod(start, end))  # type: ignore[arg-type]
    old = pr.PlanItem("Current plan", parse_amount(price), quantity)
    if new_price is None:
        result = pr.prorate_join(old, period, moment, rule=rule,  # type: ignore[arg-type]
                                 tax_rate_percent=tax_rate)
    else:
        new = pr.PlanItem("New plan", parse_amount(new_price), new_quantity or quantity)
        result = pr.prorate_change(old, new, period, moment, rule=rule,  # type: ignore[arg-type]
                                   tax_rate_percent=tax_rate, downgrade="immediate")
    _write_csv(csv_out, result.to_csv())
    data = {"rule": rule, "effective": str(result.effective), "lines": result.to_rows(),
            "net_cents": result.net_cents, "tax_cents": result.tax_cents,
            "total_cents": result.total_cents}
    _emit(data, as_json, _render_breakdown(f"proration [{rule}] from {moment}", result.to_rows(),
                                           result.net_cents, result.tax_cents))


# --------------------------------------------------------------------------- receipts

receipt_app = typer.Typer(help="Receipts: read photos and PDFs offline.", no_args_is_help=True)
app.add_typer(receipt_app, name="receipt")


@receipt_app.command("scan")
@handle_errors
def receipt_scan(
    file: Annotated[Path, typer.Argument(help="JPEG, PNG, WebP, HEIC or PDF.")],
    engine: Annotated[str, typer.Option(help="rapidocr (default) or tesseract.")] = "rapidocr",
    month_first: Annotated[bool, typer.Option(
        "--month-first", help="Read 03/04 as March 4 (default: day first).")] = False,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """OCR a receipt and print vendor, date, total, tax, card and items with confidences."""
    from finance.receipts import (
        OcrFailedError,
        OcrUnavailableError,
        ReceiptInputError,
        scan_receipt,
    )

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    clock = _clock(today)
    try:
        scan = scan_receipt(data, engine=engine,
                            date_order="month_first" if month_first else "day_first",
                            today=clock().date())
    except (ReceiptInputError, OcrUnavailableError, OcrFailedError) as exc:
        raise UsageError(str(exc)) from None
    fields = scan.fields.as_dict()
    data_out = {"file": str(file), "sha256": scan.sha256, "kind": str(scan.kind),
                "engine": scan.engine, "pages": scan.pages, "ocr_ms": scan.ocr_ms,
                "fields": fields}
    f = scan.fields
    lines = [
        f"{file.name}: {scan.kind}, {scan.pages} page(s), engine {scan.engine or 'text layer'}",
        f"  vendor   {f.vendor or '?'}  ({f.confidence.vendor}%)",
        f"  date     {f.date or '?'}  ({f.confidence.date}%)",
        f"  total    {format_cents(f.total_cents) if f.total_cents is not None else '?'}"
        f"  ({f.confidence.total}%)",
        f"  tax      {format_cents(f.tax_cents) if f.tax_cents is not None else '?'}",
        f"  card     {('••••' + f.card_last4) if f.card_last4 else '-'}",
    ]
    if f.suspicious_text:
        lines.append("  warning: the receipt contains instruction-like text; treated as data only")
    _emit(data_out, as_json, "\n".join(lines))


# --------------------------------------------------------------------------- command groups


def _load_command_groups() -> None:
    """Import every module of ``bot.commands``; importing one registers its commands."""
    import importlib
    import pkgutil

    from bot import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}")


_load_command_groups()
