"""run_billing: preview a month's billing run; drafting and issuing need a person's click."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import select
from sqlmodel import Session

from finance.authz import Actor
from finance.services import Services
from tools import actions
from tools.base import FINANCE, ToolContext, ToolInput, ToolOutput, tool


class RunBillingIn(ToolInput):
    period: str = Field(description="Billing month, YYYY-MM.")
    location: str | None = Field(default=None, description="Location code or name; all if empty.")
    dry_run: bool = Field(default=True, description="True: preview only. False: prepare the run "
                          "for a manager to confirm (it never runs without that click).")

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ValueError("period must look like YYYY-MM")
        return value


class RunBillingOut(ToolOutput):
    period: str
    scope: str
    already_run: bool
    invoices: int
    subtotal_cents: int
    tax_cents: int
    total_cents: int
    by_line_kind_cents: dict[str, int]
    pending_action: str | None = None  # token for the Confirm button


def _engine(services: Services) -> Any:
    from finance.billing import BillingEngine, BillingPolicy

    return BillingEngine(services.chart, BillingPolicy.from_settings(services.settings))


def _location_code(session: Session, text: str | None) -> str | None:
    if not text:
        return None
    from finance.models import Location

    wanted = text.strip().lower()
    for loc in session.execute(select(Location)).scalars():
        if wanted in (loc.code.lower(), loc.name.lower()):
            return loc.code
    raise ValueError(f"unknown location {text!r}")


@tool("run_billing", roles=FINANCE, writes=True)
def run_billing(ctx: ToolContext, params: RunBillingIn) -> RunBillingOut:
    """Preview the billing run for a month (plan charges, prorations, usage, deposits, tax):
    how many invoices and for how much. With dry_run=false it prepares the run and returns a
    Confirm button for a manager; nothing is written until that click. Use for 'bill November'
    or 'what would December's invoices total'. Not for looking up existing invoices."""
    from finance.money import format_cents

    with ctx.services.session() as session:
        code = _location_code(session, params.location)
        result = _engine(ctx.services).run(session, params.period, actor=ctx.actor,
                                           location_code=code, dry_run=True)
    s = result.summary()
    data = {k: s[k] for k in ("period", "scope", "already_run", "invoices", "subtotal_cents",
                              "tax_cents", "total_cents", "by_line_kind_cents")}
    if s["already_run"]:
        return RunBillingOut(summary=f"billing for {params.period} ({s['scope']}) already ran",
                             **data)
    text = (f"{s['invoices']} invoices for {params.period} ({s['scope']}), "
            f"total {format_cents(s['total_cents'])} incl. tax {format_cents(s['tax_cents'])}")
    if params.dry_run or not s["invoices"]:
        return RunBillingOut(summary=f"preview: {text}", **data)
    proposed = actions.propose(
        ctx.services, ctx.actor, "run_billing",
        {"period": params.period, "location_code": code}, data,
        f"Create {text} as drafts", thread_key=ctx.thread_key)
    return RunBillingOut(summary=f"ready to create {text}; a manager must confirm",
                         pending_action=proposed.token, **data)


@actions.executor("run_billing", roles=FINANCE, describe="run billing")
def _execute_run(session: Session, services: Services, actor: Actor, args: dict[str, Any],
                 today: date) -> dict[str, Any]:
    from finance.money import format_cents

    result = _engine(services).run(session, args["period"], actor=actor,
                                   location_code=args.get("location_code"), dry_run=False)
    s = result.summary()
    if s["already_run"]:
        return {"summary": f"billing for {s['period']} had already run; nothing new",
                "invoices": 0}
    ids = list(s["invoice_ids"])
    follow = actions.propose(
        services, actor, "issue_invoices", {"invoice_ids": ids, "period": s["period"]},
        {"invoices": len(ids), "total_cents": s["total_cents"]},
        f"Approve and issue {len(ids)} invoices for {s['period']}", session=session)
    return {"summary": f"created {len(ids)} draft invoices for {s['period']} "
                       f"({format_cents(s['total_cents'])})",
            "invoices": len(ids), "total_cents": s["total_cents"],
            "next_action": follow.token}


@actions.executor("issue_invoices", roles=FINANCE, describe="approve and issue invoices")
def _execute_issue(session: Session, services: Services, actor: Actor, args: dict[str, Any],
                   today: date) -> dict[str, Any]:
    engine = _engine(services)
    ids = [int(i) for i in args["invoice_ids"]]
    engine.approve(session, ids, actor=actor)
    issued = engine.issue(session, ids, actor=actor, on=today)
    return {"summary": f"issued {len(issued)} invoices for {args.get('period')}",
            "issued": len(issued)}
