"""`hub user deactivate --email E [--successor EMAIL]`: the user's work goes to a colleague."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from hub.auth.users import UserError, deactivate_user
from hub.db import Database
from hub.models import User
from hub.settings import Settings
from hubcli.serve import fail


async def _user_id(db: Database, email: str, option: str) -> int:
    async with db.read() as session:
        found = await session.scalar(
            select(User.id).where(func.lower(User.email) == email.strip().lower())
        )
    if found is None:
        raise UserError(f"{option}: no user {email}")
    return int(found)


def deactivate(settings: Settings, email: str, successor: str | None) -> int:
    async def run() -> str:
        db = Database(settings.database_url)
        try:
            user_id = await _user_id(db, email, "--email")
            successor_id = await _user_id(db, successor, "--successor") if successor else None
            async with db.write() as session:
                done = await deactivate_user(
                    session, user_id, successor_id, by_user_id=None, ip="cli"
                )
            return (
                f"deactivated {email}: {done.conversations} conversation(s), {done.leads} lead(s) "
                f"and {done.reminders} reminder(s) went to user {done.successor_id}; "
                f"{done.tokens_revoked} token(s) revoked"
            )
        finally:
            await db.dispose()

    try:
        print(asyncio.run(run()))
    except UserError as exc:
        return fail(str(exc).replace("successor_id:", "--successor:"))
    return 0
