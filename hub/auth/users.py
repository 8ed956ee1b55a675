"""Users and roles: operators answer, managers oversee, admins administer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.audit import record
from hub.auth.passwords import (
    MIN_LENGTH,
    hash_password,
    needs_rehash,
    spend_a_verification,
    verify_password,
)
from hub.leads.emails import normalize_email
from hub.models import ApiToken, Conversation, Lead, Reminder, User, utcnow

ROLES = ("operator", "manager", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}


class UserError(ValueError):
    """A user cannot be created as asked; the message names the field."""


def at_least(user: User, role: str) -> bool:
    return RANK.get(user.role, -1) >= RANK[role]


async def create_user(
    session: AsyncSession, email: str, password: str, role: str, name: str = ""
) -> User:
    normalized = normalize_email(email)
    if normalized is None:
        raise UserError(f"--email: {email!r} is not a valid e-mail address")
    if role not in ROLES:
        raise UserError(f"--role: must be one of {', '.join(ROLES)}, got {role!r}")
    if len(password) < MIN_LENGTH:
        raise UserError(f"--password: at least {MIN_LENGTH} characters")
    existing = await session.scalar(select(User).where(User.email == normalized))
    if existing is not None:
        raise UserError(f"--email: a user with {normalized} already exists")
    user = User(
        email=normalized,
        name=name or normalized.split("@")[0],
        role=role,
        password_hash=hash_password(password),
    )
    session.add(user)
    await session.flush()
    return user


async def authenticate(session: AsyncSession, email: str, password: str) -> User | None:
    normalized = normalize_email(email) or email.strip().lower()
    user = await session.scalar(select(User).where(func.lower(User.email) == normalized))
    if user is None or not user.active:
        spend_a_verification(password)  # same cost whether or not the user exists
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def user_to_dict(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "active": user.active,
        "created_at": user.created_at.isoformat(),
    }


@dataclass(frozen=True)
class Handover:
    """What deactivating a user moved to their successor (issue 10): nothing is deleted."""

    user_id: int
    successor_id: int
    conversations: int
    leads: int
    reminders: int
    tokens_revoked: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


async def deactivate_user(
    session: AsyncSession,
    user_id: int,
    successor_id: int | None,
    *,
    by_user_id: int | None,
    ip: str | None,
) -> Handover:
    """Deactivate a user: their open conversations, open leads and pending reminders go to the
    successor (default: their manager), their tokens are revoked, and it is audited."""
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise LookupError(f"user {user_id} not found")
    if not user.active:
        raise UserError(f"user {user.email} is already deactivated")
    if successor_id is None:
        successor_id = user.manager_id
        if successor_id is None:
            raise UserError(
                f"successor_id: {user.email} has no manager; name the colleague who takes over"
            )
    if successor_id == user.id:
        raise UserError("successor_id: the successor must be someone else")
    successor = await session.get(User, successor_id)
    if successor is None or not successor.active:
        raise UserError(f"successor_id: no active user {successor_id}")
    now = utcnow()
    moved = []
    for model, statuses in (
        (Conversation, ("open", "pending")),
        (Lead, ("open",)),
        (Reminder, ("pending", "notified")),
    ):
        result = await session.execute(
            update(model)
            .where(model.assignee_id == user.id, model.status.in_(statuses))
            .values(assignee_id=successor.id, updated_at=now)
        )
        moved.append(int(getattr(result, "rowcount", 0) or 0))
    revoked = await session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    # The people they managed escalate to the next manager up (or any manager, when none).
    await session.execute(
        update(User).where(User.manager_id == user.id).values(manager_id=user.manager_id)
    )
    user.active = False
    handover = Handover(
        user_id=user.id,
        successor_id=successor.id,
        conversations=moved[0],
        leads=moved[1],
        reminders=moved[2],
        tokens_revoked=int(getattr(revoked, "rowcount", 0) or 0),
    )
    await record(
        session,
        "user.deactivate",
        user_id=by_user_id,
        ip=ip,
        target_type="user",
        target_id=user.id,
        meta=handover.to_dict(),
    )
    return handover
