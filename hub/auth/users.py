"""Users and roles: operators answer, managers oversee, admins administer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.passwords import (
    MIN_LENGTH,
    hash_password,
    needs_rehash,
    spend_a_verification,
    verify_password,
)
from hub.leads.emails import normalize_email
from hub.models import User

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
