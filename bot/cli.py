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
from finance.db import StoreError
from finance.models import Member
from finance.money import MoneyError, format_cents
from finance.services import Services, build_services
from finance.settings import ConfigError, Settings, load_settings

log = logging.getLogger("deskbooks.cli")

app = typer.Typer(
    name="deskbooks",
    help="deskbooks: bookkeeping for co-working spaces (ledger, billing, receipts, Slack).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(help="Export the books to other tools.", no_args_is_help=True)
ledger_app = typer.Typer(help="Inspect the ledger.", no_args_is_help=True)
app.add_typer(export_app, name="export")
app.add_typer(ledger_app, name="ledger")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TodayOpt = Annotated[
    str | None, typer.Option("--today", help="Pretend today is YYYY-MM-DD (reproducible runs).")
]

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(Exception):
    """Bad command-line input, reported without a traceback."""


def handle_errors(fn: F) -> F:
    """Map expected failures to a one-line message and exit code 2; hide tracebacks."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, StoreError, ledger.LedgerError, MoneyError, UsageError) as exc:
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
    members: Annotated[int, typer.Option(min=1, max=100_000, help="Members to generate.")] = 400,
    months: Annotated[int, typer.Option(min=2, max=60, help="Months of history.")] = 24,
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
        result = demo_space.seed_demo(
            services, members=members, months=months, through=through, seed=seed
        )
        planted = [{"kind": p.kind, "description": p.description} for p in result.planted]
    with services.session() as session:
        summary = space_summary(session, services.today())
    data = summary.as_dict() | {"planted_problems": planted}
    _emit(data, as_json, _render_summary(summary, planted))
    if not no_chat and not as_json:
        typer.echo("\n(The terminal assistant is not part of this build yet; run with --no-chat "
                   "to skip this note.)")


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
        f"  revenue {summary.last_month}     {format_cents(summary.revenue_last_month_cents)}",
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
