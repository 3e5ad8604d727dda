"""Who may do what. Roles come only from the store (Slack user id -> role), never from an LLM.

An ``Actor`` is either a Slack user (checked against ``slack_user`` on every write) or a
trusted local process (the CLI run by the operator, the scheduler), named ``system:<what>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from finance.models import Role, SlackUser


class NotAuthorized(PermissionError):
    """The caller's role in the store does not allow this action."""


@dataclass(frozen=True)
class Actor:
    user_id: str
    team_id: str | None = None

    @classmethod
    def system(cls, what: str) -> Actor:
        return cls(f"system:{what}")

    @property
    def is_system(self) -> bool:
        return self.user_id.startswith("system:") and self.team_id is None

    @property
    def label(self) -> str:
        return self.user_id


def role_of(session: Session, actor: Actor) -> Role | None:
    if actor.is_system:
        return Role.ADMIN
    if actor.team_id is None:
        return None
    row = session.execute(
        select(SlackUser).where(SlackUser.team_id == actor.team_id,
                                SlackUser.user_id == actor.user_id)
    ).scalar_one_or_none()
    if row is None or not row.active:
        return None
    try:
        return Role(row.role)
    except ValueError:
        return None


def require_role(session: Session, actor: Actor, allowed: set[Role], action: str) -> Role:
    """Return the caller's role, or raise ``NotAuthorized`` naming the action."""
    role = role_of(session, actor)
    if role is None:
        raise NotAuthorized(f"you are not a known deskbooks user, so you cannot {action}")
    if role not in allowed and role != Role.ADMIN:
        names = ", ".join(sorted(r.value for r in allowed))
        raise NotAuthorized(f"{action} needs one of these roles: {names} (you are {role.value})")
    return role


FINANCE_WRITERS = {Role.MANAGER, Role.CFO, Role.ADMIN}
