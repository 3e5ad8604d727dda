"""``deskbooks bills``: enter vendor bills, approve or reject them, pay them, delegate."""

from __future__ import annotations

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
    handle_errors,
    user_errors,
)
from finance.approvals import (
    BillDraft,
    BillError,
    BillView,
    Decision,
    create_bill,
    decide,
    get_bill,
    list_bills,
    pay_bill,
    pending_for,
    policy_of,
    set_delegation,
)
from finance.money import format_cents, parse_amount

bills_app = typer.Typer(help="Vendor bills: enter, approve or reject, pay; delegate approvals.",
                        no_args_is_help=True)
app.add_typer(bills_app, name="bills")

IdArg = Annotated[int, typer.Argument(help="Bill id (see `deskbooks bills list`).", min=1)]


user_errors(BillError)  # the service's refusals print as one line (exit code 2)


def _printable(text: str) -> str:
    """One terminal line: line breaks, tabs, escape and bidi controls shown as spaces."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _line(b: BillView) -> str:
    waiting = f" → {b.next_step}" if b.next_step else ""
    vendor, number = _printable(b.vendor), _printable(b.number)
    return (f"#{b.id:<6} {b.bill_date}  {vendor[:28]:<28} {number[:18]:<18} "
            f"{format_cents(b.amount_cents):>13}  {b.location:<4} {b.status}{waiting}")


def _detail(b: BillView) -> str:
    lines = [_line(b), f"  account {b.account_code}, due {b.due_date or '-'}, "
                       f"entered by {b.created_by or '?'}"]
    if b.memo:
        lines.append(f"  memo: {b.memo}")
    if b.auto_approved:
        lines.append("  auto-approved (at or under the first approval threshold)")
    for a in b.approvals:
        on_behalf = f" on behalf of {a.on_behalf_of}" if a.on_behalf_of else ""
        why = f": {a.reason}" if a.reason else ""
        lines.append(f"  {a.step}: {a.decision} by {a.decided_by}{on_behalf} at "
                     f"{a.decided_at:%Y-%m-%d %H:%M} UTC{why}")
    if b.paid_on:
        lines.append(f"  paid {b.paid_on} by {b.payment_method}")
    return "\n".join(lines)


@bills_app.command("create")
@handle_errors
def bills_create(
    vendor: Annotated[str, typer.Option(help="Vendor name (found or created).")],
    amount: Annotated[str, typer.Option(help="Bill total including tax, e.g. 1250.00.")],
    number: Annotated[str, typer.Option(help="The vendor's bill / invoice number.")],
    bill_date: Annotated[str, typer.Option("--date", help="Bill date YYYY-MM-DD.")],
    due: Annotated[str | None, typer.Option(help="Due date YYYY-MM-DD.")] = None,
    account: Annotated[str | None, typer.Option(
        help="Account code (default: the vendor's default account).")] = None,
    location: Annotated[str | None, typer.Option(help="Location code.")] = None,
    memo: Annotated[str | None, typer.Option(help="What the bill is for.")] = None,
    tax: Annotated[str | None, typer.Option(help="Tax included in the total.")] = None,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enter a bill; it is routed by amount (auto-approved at or under the first threshold)."""
    draft = BillDraft(
        vendor=vendor, amount_cents=parse_amount(amount), number=number,
        bill_date=_date(bill_date, "--date"), due_date=_date(due, "--due") if due else None,
        account_code=account, location=location, memo=memo,
        tax_cents=parse_amount(tax) if tax else 0, source="cli",
    )
    services = _services(today)
    view = create_bill(services, _actor(services, as_user), draft)
    head = ("auto-approved and posted" if view.auto_approved
            else f"waiting on: {', '.join(view.required_steps)}")
    _emit(view.as_dict(), as_json, f"entered bill #{view.id} ({head})\n{_detail(view)}")


@bills_app.command("list")
@handle_errors
def bills_list(
    status: Annotated[str | None, typer.Option(
        help="pending, approved, rejected or paid.")] = None,
    location: Annotated[str | None, typer.Option(help="Location code.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List bills by bill date."""
    services = _services()
    with services.session() as session:
        views = list_bills(session, status=status, location=location)
    total = sum(v.amount_cents for v in views)
    text = "\n".join([_line(v) for v in views]
                     + [f"{len(views)} bills, {format_cents(total)}"])
    _emit({"bills": [v.as_dict() for v in views], "count": len(views), "total_cents": total},
          as_json, text)


@bills_app.command("show")
@handle_errors
def bills_show(bill_id: IdArg, as_json: JsonOpt = False) -> None:
    """Show one bill with its approval history."""
    services = _services()
    with services.session() as session:
        view = get_bill(session, bill_id)
    _emit(view.as_dict(), as_json, _detail(view))


@bills_app.command("pending")
@handle_errors
def bills_pending(as_user: AsOpt = None, today: TodayOpt = None,
                  as_json: JsonOpt = False) -> None:
    """Bills waiting on a step you may decide now (your role or a delegation)."""
    services = _services(today)
    actor = _actor(services, as_user)
    with services.session() as session:
        views = pending_for(session, actor, now=services.clock(), policy=policy_of(services))
    _emit({"bills": [v.as_dict() for v in views], "count": len(views)}, as_json,
          "\n".join([_line(v) for v in views] + [f"{len(views)} bills waiting on you"]))


def _report(result: Decision, as_json: bool) -> None:
    if result.outcome in ("not_your_step", "not_pending"):
        raise UsageError(result.message)
    text = result.message if result.changed else f"nothing changed: {result.message}"
    _emit(result.as_dict(), as_json, f"{text}\n{_detail(result.bill)}")


@bills_app.command("approve")
@handle_errors
def bills_approve(
    bill_id: IdArg,
    step: Annotated[str | None, typer.Option(help="Only this step (e.g. gm, cfo).")] = None,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve the step the bill is waiting on (your role is checked in the store)."""
    services = _services(today)
    _report(decide(services, _actor(services, as_user), bill_id, "approve", step=step),
            as_json)


@bills_app.command("reject")
@handle_errors
def bills_reject(
    bill_id: IdArg,
    reason: Annotated[str, typer.Option(help="Why (required).")],
    step: Annotated[str | None, typer.Option(help="Only this step (e.g. gm, cfo).")] = None,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject the bill at the step it is waiting on; a reason is required."""
    services = _services(today)
    _report(decide(services, _actor(services, as_user), bill_id, "reject", reason, step=step),
            as_json)


@bills_app.command("pay")
@handle_errors
def bills_pay(
    bill_id: IdArg,
    method: Annotated[str, typer.Option(help="check, ach, cash or card.")],
    on: Annotated[str | None, typer.Option(help="Payment date (default: today).")] = None,
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record payment of an approved bill (AP against cash, or the credit card)."""
    services = _services(today)
    view = pay_bill(services, _actor(services, as_user), bill_id, method,
                    paid_on=_date(on, "--on") if on else None)
    _emit(view.as_dict(), as_json, f"paid bill #{view.id}\n{_detail(view)}")


@bills_app.command("delegate")
@handle_errors
def bills_delegate(
    to: Annotated[str, typer.Option("--to", help="Slack user id of the delegate.")],
    starts: Annotated[str, typer.Option("--from", help="First day YYYY-MM-DD.")],
    until: Annotated[str, typer.Option("--until", help="Last day YYYY-MM-DD (inclusive).")],
    as_user: AsOpt = None,
    today: TodayOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let someone decide your approval steps while you are away (GM or CFO; needs --as)."""
    if as_user is None:
        raise UsageError("say whose approvals to delegate with --as (a GM or the CFO)")
    services = _services(today)
    view = set_delegation(services, _actor(services, as_user), to, _date(starts, "--from"),
                          _date(until, "--until"))
    _emit(view.as_dict(), as_json,
          f"{view.delegate_user_id} decides {view.approver_user_id}'s approvals from "
          f"{view.starts_on} to {view.ends_on}")
