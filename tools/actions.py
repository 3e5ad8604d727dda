"""Pending actions: what a write tool prepares, and what a person's click executes.

A write tool calls :func:`propose` with a preview; the assistant shows it with a Confirm
button carrying only the action's token. :func:`confirm` re-checks the clicker's role in the
store, claims the action with one conditional UPDATE (so a double click or two people clicking
at once run it once), and runs the registered executor in the same transaction: either the
write and the status change commit together, or neither does.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from finance import audit
from finance.authz import Actor, require_role
from finance.models import PendingAction, Role
from finance.services import Services

ACTION_TTL = timedelta(hours=24)

Executor = Callable[[Session, Services, Actor, dict[str, Any], date], dict[str, Any]]


@dataclass(frozen=True)
class ExecutorSpec:
    roles: frozenset[Role]
    run: Executor
    describe: str  # "run billing", used in messages
    # True when the service opens its own transaction: the action is claimed and committed
    # first ("running"), then run; a failure puts it back to pending.
    own_transaction: bool = False


_EXECUTORS: dict[str, ExecutorSpec] = {}


def executor(kind: str, *, roles: frozenset[Role], describe: str,
             own_transaction: bool = False) -> Callable[[Executor], Executor]:
    def register(fn: Executor) -> Executor:
        _EXECUTORS[kind] = ExecutorSpec(roles, fn, describe, own_transaction)
        return fn

    return register


@dataclass(frozen=True)
class Proposed:
    token: str
    kind: str
    summary: str
    preview: dict[str, Any]


@dataclass(frozen=True)
class Confirmation:
    outcome: str  # done / already_done / cancelled / expired / not_found
    message: str
    kind: str | None = None
    result: dict[str, Any] | None = None


def propose(
    services: Services, actor: Actor, kind: str, args: dict[str, Any], preview: dict[str, Any],
    summary: str, *, thread_key: str | None = None, session: Session | None = None,
) -> Proposed:
    """Store a pending action (in ``session`` when given); nothing else is written."""
    from tools.base import all_tools

    all_tools()  # executors live next to the tools that propose them
    if kind not in _EXECUTORS:
        raise ValueError(f"unknown action {kind!r}")
    token = secrets.token_urlsafe(18)
    now = services.clock()
    row = PendingAction(
        token=token, tool=kind, args=args, preview={**preview, "summary": summary},
        requested_by=actor.user_id, team_id=actor.team_id, thread_key=thread_key,
        created_at=now, expires_at=now + ACTION_TTL)
    if session is not None:
        session.add(row)
        session.flush()
    else:
        with services.session() as own:
            own.add(row)
    return Proposed(token, kind, summary, preview)


def confirm(services: Services, actor: Actor, token: str, *, today: date) -> Confirmation:
    """Run a pending action once, for an authorized person; every other click changes nothing."""
    from tools.base import all_tools

    all_tools()  # executors live next to the tools that propose them
    with services.session() as session:
        row = session.execute(
            select(PendingAction).where(PendingAction.token == token)).scalar_one_or_none()
        if row is None:
            return Confirmation("not_found", "that action no longer exists")
        spec = _EXECUTORS.get(row.tool)
        if spec is None:
            return Confirmation("not_found", f"this version cannot run {row.tool!r} actions")
        require_role(session, actor, set(spec.roles), spec.describe)
        if row.status != "pending":
            who = row.decided_by or "someone"
            return Confirmation("already_done" if row.status == "done" else row.status,
                                f"already {row.status} by {who}", row.tool, row.result or None)
        now = services.clock()
        if row.expires_at is not None and row.expires_at < now:
            return Confirmation("expired", "this preview has expired; ask again for a fresh one",
                                row.tool)
        claimed = session.execute(
            update(PendingAction)
            .where(PendingAction.id == row.id, PendingAction.status == "pending")
            .values(status="running" if spec.own_transaction else "done",
                    decided_by=actor.user_id, decided_at=now)
        ).rowcount
        if claimed != 1:
            return Confirmation("already_done", "someone else confirmed it first", row.tool)
        if not spec.own_transaction:  # the write and the claim commit together, or neither
            result = spec.run(session, services, actor, dict(row.args), today)
            session.execute(update(PendingAction).where(PendingAction.id == row.id)
                            .values(result=result))
            audit.record(session, actor=actor.label, action=f"action.{row.tool}",
                         entity_type="pending_action", entity_id=row.id,
                         details={"args": row.args, "requested_by": row.requested_by})
            return Confirmation("done", result.get("summary", "done"), row.tool, result)
        action_id, kind, args, requested_by = row.id, row.tool, dict(row.args), row.requested_by
    return _run_outside(services, actor, spec, action_id, kind, args, requested_by, today)


def _run_outside(services: Services, actor: Actor, spec: ExecutorSpec, action_id: int,
                 kind: str, args: dict[str, Any], requested_by: str,
                 today: date) -> Confirmation:
    """Run a service that commits on its own; release the claim if it fails."""
    try:
        result = spec.run(None, services, actor, args, today)  # type: ignore[arg-type]
    except BaseException:
        with services.session() as session:
            session.execute(update(PendingAction).where(PendingAction.id == action_id)
                            .values(status="pending", decided_by=None, decided_at=None))
        raise
    with services.session() as session:
        session.execute(update(PendingAction).where(PendingAction.id == action_id)
                        .values(status="done", result=result))
        audit.record(session, actor=actor.label, action=f"action.{kind}",
                     entity_type="pending_action", entity_id=action_id,
                     details={"args": args, "requested_by": requested_by})
    return Confirmation("done", result.get("summary", "done"), kind, result)


def cancel(services: Services, actor: Actor, token: str) -> Confirmation:
    """Drop a pending action (the requester or anyone allowed to run it)."""
    with services.session() as session:
        row = session.execute(
            select(PendingAction).where(PendingAction.token == token)).scalar_one_or_none()
        if row is None:
            return Confirmation("not_found", "that action no longer exists")
        if actor.user_id != row.requested_by:
            spec = _EXECUTORS.get(row.tool)
            require_role(session, actor, set(spec.roles if spec else {Role.ADMIN}),
                         "cancel this action")
        changed = session.execute(
            update(PendingAction)
            .where(PendingAction.id == row.id, PendingAction.status == "pending")
            .values(status="cancelled", decided_by=actor.user_id, decided_at=services.clock())
        ).rowcount
        if not changed:
            return Confirmation(row.status, f"already {row.status}", row.tool)
        return Confirmation("cancelled", "cancelled; nothing was changed", row.tool)
