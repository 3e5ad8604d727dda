"""member_balance: what a member owes (or holds as credit) right now."""

from __future__ import annotations

from pydantic import Field
from sqlalchemy import func, select

from tools.base import EVERYONE, ToolContext, ToolInput, ToolOutput, tool


class MemberBalanceIn(ToolInput):
    member: str = Field(description="Member name or code.")


class MemberBalanceOut(ToolOutput):
    member: str
    member_code: str
    balance_cents: int  # receivable balance: > 0 owes, < 0 holds credit
    open_invoices: int
    overdue_cents: int
    credit_cents: int
    deposit_held_cents: int


@tool("member_balance", roles=EVERYONE)
def member_balance(ctx: ToolContext, params: MemberBalanceIn) -> MemberBalanceOut:
    """A member's balance from the ledger: what they owe (or their credit), how much is overdue,
    open invoices and the security deposit held. Use for 'how much does Priya owe' or
    'does Bluebird have credit'. Not for listing invoices (use find_invoices)."""
    from finance.models import Account, Deposit, Invoice, InvoiceStatus, JournalLine
    from finance.money import format_cents
    from finance.receivables import amount_due
    from finance.subscriptions import find_member

    with ctx.services.session() as session:
        member = find_member(session, params.member)
        balance = session.execute(
            select(func.coalesce(func.sum(JournalLine.amount_cents), 0))
            .join(Account, Account.id == JournalLine.account_id)
            .where(Account.code == "1100", JournalLine.member_id == member.id)
        ).scalar_one()
        open_rows = session.execute(
            select(Invoice).where(Invoice.member_id == member.id,
                                  Invoice.status == InvoiceStatus.OPEN)).scalars().all()
        deposits = session.execute(
            select(func.coalesce(func.sum(Deposit.amount_cents - Deposit.refunded_cents), 0))
            .where(Deposit.member_id == member.id, Deposit.status == "held")).scalar_one()
    overdue = sum(amount_due(inv) for inv in open_rows
                  if inv.due_date is not None and inv.due_date < ctx.today)
    balance = int(balance)
    credit = -balance if balance < 0 else 0
    if balance > 0:
        head = f"{member.name} owes {format_cents(balance)}"
    elif credit:
        head = f"{member.name} has {format_cents(credit)} of credit"
    else:
        head = f"{member.name} is paid up"
    summary = (f"{head}; {len(open_rows)} open invoices, {format_cents(overdue)} overdue"
               + (f"; deposit held {format_cents(int(deposits))}" if deposits else ""))
    return MemberBalanceOut(summary=summary, member=member.name, member_code=member.code,
                            balance_cents=balance, open_invoices=len(open_rows),
                            overdue_cents=overdue, credit_cents=credit,
                            deposit_held_cents=int(deposits))
