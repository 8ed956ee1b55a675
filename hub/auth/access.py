"""Who may see and act on which conversation: operators their own and unassigned ones, managers
also their team's (users whose manager_id is theirs), admins every one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.users import at_least
from hub.models import Conversation, User


def team_of(manager: User) -> Any:
    """A subquery of the ids of the users a manager manages."""
    return select(User.id).where(User.manager_id == manager.id).scalar_subquery()


def visible_assigned(user: User, assignee: Any) -> Any | None:
    """A WHERE clause limiting rows with this assignee column (conversations, leads, reminders)
    to the user's sight; None: no limit (admins)."""
    if at_least(user, "admin"):
        return None
    mine = or_(assignee.is_(None), assignee == user.id)
    if at_least(user, "manager"):
        return or_(mine, assignee.in_(team_of(user)))
    return mine


def visible_conversations(user: User) -> Any | None:
    """A WHERE clause limiting conversations to the user's sight; None: no limit (admins)."""
    return visible_assigned(user, Conversation.assignee_id)


async def can_see_assigned(session: AsyncSession, user: User, assignee: int | None) -> bool:
    """Whether the user may see and act on a row assigned to `assignee`."""
    if at_least(user, "admin") or assignee is None or assignee == user.id:
        return True
    if not at_least(user, "manager"):
        return False
    manager_id = await session.scalar(select(User.manager_id).where(User.id == assignee))
    return manager_id == user.id


async def can_see_conversation(
    session: AsyncSession, user: User, conversation: Conversation
) -> bool:
    return await can_see_assigned(session, user, conversation.assignee_id)


async def may_assign(session: AsyncSession, user: User, assignee_id: int | None) -> str | None:
    """None when the user may give a conversation to `assignee_id` (None: unassign), else why not.
    Operators take a conversation or release it; managers also hand it to their team."""
    if assignee_id is None or assignee_id == user.id or at_least(user, "admin"):
        return None
    if not at_least(user, "manager"):
        return "an operator may assign a conversation only to themselves"
    manager_id = await session.scalar(select(User.manager_id).where(User.id == assignee_id))
    if manager_id != user.id:
        return f"user {assignee_id} is not in your team"
    return None
