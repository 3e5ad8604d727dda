"""CLI: ``deskbooks categorize``, ``import expenses``, ``expense confirm|discard`` and ``rules``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

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
    handle_errors,
    import_app,
)
from finance.money import MoneyError, format_cents, parse_amount

expense_app = typer.Typer(help="Expenses: confirm (post) or discard drafts.", no_args_is_help=True)
app.add_typer(expense_app, name="expense")
rules_app = typer.Typer(help="Categorization rules: list, add, deactivate, sync from knowledge/.",
                        no_args_is_help=True)
app.add_typer(rules_app, name="rules")


def _domain_errors() -> tuple[type[Exception], ...]:
    from finance.categorize import CategorizationError
    from finance.expenses import ExpenseError
    from finance.imports import ImportFileError

    return (CategorizationError, ExpenseError, ImportFileError)


def _sync_rules(services: Any) -> None:
    """Load knowledge/categorization_rules.yaml into the rule store (no-op when unchanged)."""
    from finance.categorize import sync_rules

    with services.session() as session:
        sync_rules(services, session)


def _render(vendor: str, amount: int, c: Any) -> str:
    account = f"{c.account_code} {c.account_name}" if c.account_code else "uncategorized"
    lines = [f"{vendor} {format_cents(amount)} -> {account}  ({c.confidence_pct}% via {c.source})",
             f"  {c.reason}"]
    if c.cost_center:
        lines.append(f"  cost center {c.cost_center}")
    for alt in c.alternatives:
        lines.append(f"  or {alt.account_code} {alt.account_name} ({alt.confidence_pct}%): "
                     f"{alt.reason}")
    return "\n".join(lines)


def _batch_rows(file: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in ("vendor", "amount") if c not in header]
    if missing:
        raise UsageError(f"{file.name}: missing column(s) {', '.join(missing)}; expected "
                         "vendor, amount, description, date (location, mcc optional)")
    rows = []
    try:
        for row in reader:
            cells = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()
                     if isinstance(v, str)}
            if any(cells.values()):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise UsageError(f"{file.name}: line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


@app.command()
@handle_errors
def categorize(
    vendor: Annotated[str | None, typer.Option(help="Vendor name as on the receipt.")] = None,
    amount: Annotated[str | None, typer.Option(help="Total, e.g. 12.40.")] = None,
    description: Annotated[str | None, typer.Option(help="What was bought.")] = None,
    on: Annotated[str | None, typer.Option("--date", help="Expense date YYYY-MM-DD.")] = None,
    location: Annotated[str | None, typer.Option(help="Location code.")] = None,
    mcc: Annotated[str | None, typer.Option(help="Card merchant category code.")] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", help="CSV with vendor, amount, description, date columns: one result per row.")
    ] = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose an account, cost center and location for an expense, with a reason."""
    from finance.categorize import CategorizationRequest, Categorizer, default_history

    if file is None and (vendor is None or amount is None):
        raise UsageError("give --vendor and --amount, or --file CSV")
    if file is not None and (vendor is not None or amount is not None):
        raise UsageError("--file categorizes a whole CSV; leave out --vendor and --amount")
    services = _services(today)
    try:
        _sync_rules(services)
        history = default_history(services)
        with services.session() as session:
            categorizer = Categorizer.load(services, session, history=history)
            if file is None:
                assert vendor is not None and amount is not None
                request = CategorizationRequest(
                    vendor, parse_amount(amount), description,
                    _date(on, "--date") if on else None, location, mcc)
                result = categorizer.categorize(session, request)
                _emit(result.as_dict() | {"vendor": vendor, "amount_cents": request.amount_cents},
                      as_json, _render(vendor, request.amount_cents, result))
                return
            outputs, texts = [], []
            for line, cells in _batch_rows(file):
                try:
                    request = CategorizationRequest(
                        cells.get("vendor", ""), parse_amount(cells.get("amount", "")),
                        cells.get("description") or None,
                        _date(cells["date"], "date") if cells.get("date") else None,
                        cells.get("location") or location, cells.get("mcc") or None)
                    result = categorizer.categorize(session, request)
                except (MoneyError, UsageError, *_domain_errors()) as exc:
                    outputs.append({"line": line, "error": str(exc)})
                    texts.append(f"line {line}: error: {exc}")
                    continue
                outputs.append({"line": line, "vendor": request.vendor,
                                "amount_cents": request.amount_cents} | result.as_dict())
                texts.append(f"line {line}: " + _render(request.vendor, request.amount_cents,
                                                        result))
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    _emit({"file": str(file), "results": outputs}, as_json, "\n".join(texts) or "no rows")


@import_app.command("expenses")
@handle_errors
def import_expenses(
    file: Annotated[Path, typer.Argument(
        help="CSV: date, vendor, description, amount, currency, account "
             "(+ location, cost_center, payment_method).")],
    location: Annotated[str | None, typer.Option(
        help="Location code for rows without one.")] = None,
    post: Annotated[bool, typer.Option(
        "--post", help="Also post each row to the ledger (default: history booked elsewhere).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate every row; write nothing.")
                       ] = False,
    index: Annotated[bool, typer.Option(
        "--index/--no-index", help="Update the expense-history search index afterwards.")] = True,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The operator's categorized expense history, validated row by row, all or nothing."""
    from finance.expenses import import_expenses_csv

    services = _services(today)
    actor = _actor(services, as_user)
    try:
        _sync_rules(services)
        report = import_expenses_csv(services, actor, file, location=location, post=post,
                                     dry_run=dry_run)
    except _domain_errors() as exc:
        raise UsageError(f"{file.name}: {exc}") from None
    if report.ok and report.imported and index and not dry_run:
        try:
            from finance.kb import sync_history

            report.extra["indexed"] = sync_history(services)
        except Exception as exc:  # the search index is optional; the SQL history is complete
            report.warnings.append("the expense-history index was not updated "
                                   f"({type(exc).__name__})")
    report.extra.pop("expense_ids", None)
    _emit(report.as_dict(), as_json, report.text())
    if report.rejected:
        typer.echo(f"error: {len(report.rejected)} rows rejected; nothing imported", err=True)
        raise typer.Exit(2)


@expense_app.command("confirm")
@handle_errors
def expense_confirm(
    expense_id: Annotated[int, typer.Argument(help="The draft expense id.")],
    account: Annotated[str | None, typer.Option(
        help="Account code (default: the proposed).")] = None,
    cost_center: Annotated[str | None, typer.Option("--cost-center")] = None,
    payment_method: Annotated[str | None, typer.Option(
        "--payment-method", help="card (2500), cash (1000) or ap (2000).")] = None,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate", help="Post even though it looks like a duplicate.")] = False,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Post a draft expense as a balanced journal entry (a second confirm changes nothing)."""
    from finance.expenses import confirm_expense

    services = _services()
    actor = _actor(services, as_user)
    if payment_method is not None and payment_method not in ("card", "cash", "ap"):
        raise UsageError("--payment-method must be card, cash or ap")
    try:
        result = confirm_expense(services, actor, expense_id, account_code=account,
                                 cost_center=cost_center, payment_method=payment_method,  # type: ignore[arg-type]
                                 allow_duplicate=allow_duplicate)
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    text = (f"expense #{result.expense_id} already posted (entry #{result.journal_entry_id})"
            if result.already_posted else
            f"posted expense #{result.expense_id}: {format_cents(result.amount_cents)} to "
            f"{result.account_code}, credit {result.credit_account} "
            f"(entry #{result.journal_entry_id})")
    _emit(result.as_dict(), as_json, text)


@expense_app.command("discard")
@handle_errors
def expense_discard(
    expense_id: Annotated[int, typer.Argument(help="The draft expense id.")],
    reason: Annotated[str, typer.Option(help="Why (e.g. duplicate of #12).")],
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Discard a draft expense (e.g. a duplicate receipt)."""
    from finance.expenses import discard_expense

    services = _services()
    actor = _actor(services, as_user)
    try:
        changed = discard_expense(services, actor, expense_id, reason=reason)
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    _emit({"expense_id": expense_id, "discarded": changed}, as_json,
          f"expense #{expense_id} {'discarded' if changed else 'was already discarded'}")


def _rule_line(row: Any) -> str:
    b = row.body
    when = []
    for key in ("vendor", "keywords", "mcc"):
        if b.get(key):
            when.append(f"{key} {'|'.join(b[key])}")
    if b.get("min_amount"):
        when.append(f">= {b['min_amount']}")
    if b.get("max_amount"):
        when.append(f"< {b['max_amount']}")
    flags = ("" if row.active else " [inactive]") + (" [fallback]" if b.get("fallback") else "")
    return (f"{row.rule_id} v{row.version}{flags}: {' and '.join(when)} -> {b['account']}"
            f" (priority {b.get('priority', 50)}, by {row.created_by})")


def _rule_dict(row: Any) -> dict[str, Any]:
    return {"rule_id": row.rule_id, "version": row.version, "active": row.active,
            "created_by": row.created_by, "created_at": row.created_at, "body": row.body}


@rules_app.command("list")
@handle_errors
def rules_list(
    all_versions: Annotated[bool, typer.Option("--all", help="Include inactive rules.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The rules in force (latest version of each)."""
    from finance.categorize import list_rules

    services = _services()
    try:
        _sync_rules(services)
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    with services.session() as session:
        rows = list_rules(session, include_inactive=all_versions)
    _emit({"rules": [_rule_dict(r) for r in rows]}, as_json,
          "\n".join(_rule_line(r) for r in rows) or "no rules")


@rules_app.command("sync")
@handle_errors
def rules_sync(as_json: JsonOpt = False) -> None:
    """Load knowledge/categorization_rules.yaml into the versioned rule store."""
    from finance.categorize import sync_rules

    services = _services()
    try:
        with services.session() as session:
            report = sync_rules(services, session, actor="system:cli")
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    _emit(report.as_dict(), as_json,
          f"rules: {len(report.added)} added, {len(report.changed)} changed, "
          f"{len(report.deactivated)} deactivated, {report.unchanged} unchanged"
          + (f", {len(report.kept_user_versions)} kept (changed by a person)"
             if report.kept_user_versions else ""))


@rules_app.command("add")
@handle_errors
def rules_add(
    rule_id: Annotated[str, typer.Option("--id", help="Stable rule id, e.g. coffee-small.")],
    account: Annotated[str, typer.Option(help="Account code.")],
    vendor: Annotated[list[str] | None, typer.Option(help="Vendor regex (repeatable).")] = None,
    keyword: Annotated[list[str] | None, typer.Option(help="Keyword (repeatable).")] = None,
    mcc: Annotated[list[str] | None, typer.Option(help="MCC code (repeatable).")] = None,
    match_all: Annotated[bool, typer.Option(
        "--match-all", help="Require every condition.")] = False,
    min_amount: Annotated[str | None, typer.Option("--min-amount")] = None,
    max_amount: Annotated[str | None, typer.Option("--max-amount", help="Exclusive bound.")] = None,
    cost_center: Annotated[str | None, typer.Option("--cost-center")] = None,
    priority: Annotated[int, typer.Option()] = 50,
    reason: Annotated[str | None, typer.Option(help="Plain-English why.")] = None,
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a rule, or change one (a new version). The store keeps every version."""
    from finance.categorize import add_rule

    body: dict[str, Any] = {"id": rule_id, "account": account, "priority": priority}
    for key, value in (("vendor", vendor), ("keywords", keyword), ("mcc", mcc),
                       ("min_amount", min_amount), ("max_amount", max_amount),
                       ("cost_center", cost_center), ("reason", reason)):
        if value:
            body[key] = value
    if match_all:
        body["match"] = "all"
    services = _services()
    actor = _actor(services, as_user)
    try:
        _sync_rules(services)
        with services.session() as session:
            row = add_rule(session, actor, body, knowledge_dir=services.settings.knowledge_path)
            out = _rule_dict(row)
            text = _rule_line(row)
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    _emit(out, as_json, text)


@rules_app.command("deactivate")
@handle_errors
def rules_deactivate(
    rule_id: Annotated[str, typer.Argument(help="Rule id.")],
    reason: Annotated[str, typer.Option(help="Why.")],
    as_user: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Switch a rule off (a new, inactive version; the old versions stay readable)."""
    from finance.categorize import deactivate_rule

    services = _services()
    actor = _actor(services, as_user)
    try:
        _sync_rules(services)
        with services.session() as session:
            row = deactivate_rule(session, actor, rule_id, reason=reason)
            out = _rule_dict(row)
            text = _rule_line(row)
    except _domain_errors() as exc:
        raise UsageError(str(exc)) from None
    _emit(out, as_json, text)
