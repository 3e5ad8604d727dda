"""request_bill_approval: ask the right approvers to decide on a bill (never decides it)."""

from __future__ import annotations

from pydantic import Field

from tools.base import EVERYONE, ToolContext, ToolError, ToolInput, ToolOutput, tool


class RequestApprovalIn(ToolInput):
    bill_id: int = Field(gt=0, description="The bill's number in deskbooks (e.g. 12).")


class RequestApprovalOut(ToolOutput):
    bill_id: int
    status: str
    waiting_for: str | None
    approvers: list[str]
    notified: bool


@tool("request_bill_approval", roles=EVERYONE)
def request_bill_approval(ctx: ToolContext, params: RequestApprovalIn) -> RequestApprovalOut:
    """Send a pending bill to the people who must approve it (by amount: GM, then CFO above
    $5,000). It only asks; approving or rejecting is done by those people with the buttons.
    Use for 'chase approval for bill 12'."""
    from finance import approvals

    with ctx.services.session() as session:
        view = approvals.get_bill(session, params.bill_id)
        people = approvals.approvers_for(session, params.bill_id,
                                         policy=approvals.policy_of(ctx.services),
                                         now=ctx.services.clock())
    if view.status != "pending" or view.next_step is None:
        return RequestApprovalOut(summary=f"bill #{view.id} is {view.status}; nothing to ask",
                                  bill_id=view.id, status=view.status, waiting_for=None,
                                  approvers=[], notified=False)
    if not people:
        raise ToolError(f"nobody can approve the {view.next_step} step of bill #{view.id} "
                        "yet: add a Slack user with that role")
    label = approvals.policy_of(ctx.services).label(view.next_step)
    notified = False
    if ctx.notify_bill is not None:
        ctx.notify_bill(view.id)
        notified = True
    who = ", ".join(f"<@{p}>" for p in people)
    summary = (f"bill #{view.id} ({view.vendor}) waits for {label}: "
               + (f"asked {who}" if notified else f"approvers are {who}"))
    return RequestApprovalOut(summary=summary, bill_id=view.id, status=view.status,
                              waiting_for=label, approvers=people, notified=notified)
