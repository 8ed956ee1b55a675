"""Each user's notification preference, and linking their Telegram account to the bot."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.leads.phones import normalize_phone
from hub.models import NotificationPrefs, User, utcnow
from hub.settings import Settings

VIA = ("auto", "inbox", "telegram", "email", "sms")
LINK_PREFIX = "link-"
# What a user sends to the bot: "/start link-<16 characters>" (a deep link's start parameter
# allows 64 characters of [A-Za-z0-9_-]).
LINK_RE = re.compile(r"^link-[A-Za-z0-9_-]{16}$")


class PrefsError(ValueError):
    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field


def new_link_code() -> str:
    return LINK_PREFIX + secrets.token_urlsafe(12)


# The channel type that carries each kind of notification.
CARRIER_TYPES = {"telegram": "telegram", "email": "email", "sms": "twilio"}


def carrier_channel(settings: Settings, via: str) -> str | None:
    """The channel that carries notifications `via` telegram, email or sms: the configured one
    ([notifications]), else the first channel of that type; None when there is none."""
    named = {
        "telegram": settings.notifications.telegram_channel,
        "email": settings.notifications.email_channel,
        "sms": settings.notifications.sms_channel,
    }.get(via)
    if named is not None:
        return named
    kind = CARRIER_TYPES.get(via)
    return next((n for n, c in settings.channels.items() if c.type == kind), None)


async def load_prefs(session: AsyncSession, user_id: int) -> NotificationPrefs:
    """The user's preferences, created (with a fresh link code) on first use."""
    prefs = await session.get(NotificationPrefs, user_id)
    if prefs is None:
        prefs = NotificationPrefs(user_id=user_id, via="auto", link_code=new_link_code())
        session.add(prefs)
        await session.flush()
    elif prefs.link_code is None:
        prefs.link_code = new_link_code()
        await session.flush()
    return prefs


def prefs_to_dict(prefs: NotificationPrefs, settings: Settings) -> dict[str, Any]:
    bot = carrier_channel(settings, "telegram")
    return {
        "via": prefs.via,
        "phone": prefs.phone,
        "telegram": {
            "linked": prefs.telegram_chat_id is not None,
            "chat_id": prefs.telegram_chat_id,
            "username": prefs.telegram_username,
            "channel": bot,
            "link_code": prefs.link_code,
            "link_command": f"/start {prefs.link_code}" if prefs.link_code else None,
        },
        "available": [v for v in VIA if v in ("auto", "inbox") or carrier_channel(settings, v)],
    }


async def update_prefs(
    session: AsyncSession, user: User, data: dict[str, Any], settings: Settings
) -> NotificationPrefs:
    """PATCH: `via` and `phone`; `new_link_code: true` replaces the code; `unlink_telegram`."""
    known = {"via", "phone", "new_link_code", "unlink_telegram"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PrefsError(f"{unknown[0]}: unknown field; one of {', '.join(sorted(known))}", "")
    prefs = await load_prefs(session, user.id)
    if "phone" in data:
        phone = data["phone"]
        if phone is None or phone == "":
            prefs.phone = None
        elif not isinstance(phone, str):
            raise PrefsError("phone: must be a string", "phone")
        else:
            number = normalize_phone(phone, settings.default_region)
            if number is None:
                raise PrefsError(f"phone: {phone!r} is not a valid phone number", "phone")
            prefs.phone = number
    if "via" in data:
        via = data["via"]
        if via not in VIA:
            raise PrefsError(f"via: must be one of {', '.join(VIA)}", "via")
        if via not in ("auto", "inbox") and carrier_channel(settings, via) is None:
            raise PrefsError(f"via: no {via} channel is configured in this hub", "via")
        if via == "sms" and prefs.phone is None:
            raise PrefsError("via: sms needs your phone; send phone too", "phone")
        if via == "telegram" and prefs.telegram_chat_id is None:
            raise PrefsError(
                f"via: link Telegram first: send '/start {prefs.link_code}' to the bot", "via"
            )
        prefs.via = via
    if data.get("new_link_code") is True:
        prefs.link_code = new_link_code()
    if data.get("unlink_telegram") is True:
        prefs.telegram_chat_id = prefs.telegram_username = None
        if prefs.via == "telegram":
            prefs.via = "auto"
    prefs.updated_at = utcnow()
    await session.flush()
    return prefs


async def link_telegram(
    session: AsyncSession, code: str, chat_id: str, username: str | None
) -> User | None:
    """The user whose link code this is, now reachable at chat_id; the code is spent (a new
    one replaces it), and a chat linked to someone else before moves to this user."""
    prefs = await session.scalar(
        select(NotificationPrefs).where(NotificationPrefs.link_code == code)
    )
    if prefs is None:
        return None
    user = await session.get(User, prefs.user_id)
    if user is None or not user.active:
        return None
    await session.execute(
        update(NotificationPrefs)
        .where(
            NotificationPrefs.telegram_chat_id == chat_id,
            NotificationPrefs.user_id != prefs.user_id,
        )
        .values(telegram_chat_id=None, telegram_username=None, updated_at=utcnow())
    )
    prefs.telegram_chat_id = chat_id
    prefs.telegram_username = username
    prefs.link_code = new_link_code()
    prefs.updated_at = utcnow()
    await session.flush()
    return user


async def user_for_chat(session: AsyncSession, chat_id: str) -> User | None:
    """The active user whose Telegram account this is."""
    user = await session.scalar(
        select(User)
        .join(NotificationPrefs, NotificationPrefs.user_id == User.id)
        .where(NotificationPrefs.telegram_chat_id == chat_id, User.active.is_(True))
    )
    return user
