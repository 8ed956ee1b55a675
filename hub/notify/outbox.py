"""The notification outbox: rows written in the transaction that fires or escalates a reminder,
sent after commit by whoever claims them first, retried by the sweep until they are out.

A row moves pending -> sending (one sender's claim, a conditional update) -> sent | failed, or
back to pending when the carrier may succeed later. A sender that died mid-send leaves a claim
older than CLAIM_TIMEOUT, which the sweep takes over: a notification may then go out twice
(the carrier got it, the crash came before we wrote that down), never zero times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.channels.base import Channel, OutboundMessage, SendResult
from hub.db import Database
from hub.leads.contacts import contacts_to_dicts
from hub.models import (
    Contact,
    Lead,
    Notification,
    NotificationPrefs,
    Reminder,
    User,
    _table,
    utcnow,
)
from hub.notify.prefs import carrier_channel
from hub.notify.texts import Rendered, render
from hub.settings import Settings
from hub.sql import insert_ignore

log = structlog.get_logger(__name__)
NOTIFICATIONS = _table(Notification)
CLAIM_TIMEOUT = timedelta(seconds=60)
RETRY_AFTER = timedelta(seconds=10)  # a pending row this old is the sweep's to send
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class Route:
    via: str  # inbox | telegram | email | sms
    channel: str | None = None
    address: str | None = None
    error: str | None = None  # why the preferred carrier cannot be used


def route_for(user: Any, prefs: Any, settings: Settings) -> Route:
    """Where this user gets notifications: their preference, or for "auto" Telegram when
    linked, else the web inbox only."""
    via = prefs.via if prefs is not None else "auto"
    if via == "auto":
        linked = prefs is not None and prefs.telegram_chat_id is not None
        via = "telegram" if linked and carrier_channel(settings, "telegram") else "inbox"
    if via == "inbox":
        return Route("inbox")
    channel = carrier_channel(settings, via)
    if channel is None:
        return Route(via, error=f"no {via} channel is configured")
    address = {
        "telegram": prefs.telegram_chat_id if prefs else None,
        "email": user.email,
        "sms": prefs.phone if prefs else None,
    }[via]
    if address is None:
        missing = {"telegram": "Telegram is not linked", "sms": "no phone in the profile"}
        return Route(via, channel, error=missing.get(via, "no address"))
    return Route(via, channel, address)


USERS = _table(User)
PREFS = _table(NotificationPrefs)


def supervisor_of(conn: Connection, assignee_id: int | None) -> int | None:
    """The assignee's manager, else any active manager (the lowest id)."""
    if assignee_id is not None:
        manager = conn.scalar(select(USERS.c.manager_id).where(USERS.c.id == assignee_id))
        if manager is not None:
            return int(manager)
    found = conn.scalar(
        select(USERS.c.id)
        .where(USERS.c.role == "manager", USERS.c.active.is_(True))
        .order_by(USERS.c.id)
        .limit(1)
    )
    return int(found) if found is not None else None


def _route(
    conn: Connection, settings: Settings, user_id: int, cache: dict[int, Route | None]
) -> Route | None:
    if user_id not in cache:
        user = conn.execute(select(USERS).where(USERS.c.id == user_id)).first()
        if user is None or not user.active:
            cache[user_id] = None
        else:
            prefs = conn.execute(select(PREFS).where(PREFS.c.user_id == user_id)).first()
            cache[user_id] = route_for(user, prefs, settings)
    return cache[user_id]


@dataclass
class PlanCache:
    """What one batch of firings looks up once: users' routes, and supervisors."""

    routes: dict[int, Route | None] = field(default_factory=dict)
    supervisors: dict[int | None, int | None] = field(default_factory=dict)


def plan(
    conn: Connection,
    settings: Settings,
    reminder: Any,
    kind: str,
    cache: PlanCache | None = None,
) -> list[int]:
    """Write the outbox rows for a reminder that just fired ("due": to its assignee, or a
    manager when it has none) or was escalated ("escalation": to the supervisor), in the
    caller's transaction. Once per reminder, user, kind and due time. The ids of rows to send.
    `cache` keeps users' routes across the reminders of one batch."""
    cache = PlanCache() if cache is None else cache
    if kind == "due" and reminder.assignee_id is not None:
        recipient: int | None = reminder.assignee_id
    else:
        if reminder.assignee_id not in cache.supervisors:
            supervisor = supervisor_of(conn, reminder.assignee_id)
            cache.supervisors[reminder.assignee_id] = supervisor
        recipient = cache.supervisors[reminder.assignee_id]
    if recipient is None:
        return []
    route = _route(conn, settings, recipient, cache.routes)
    if route is None:
        return []
    if route.via == "inbox":
        return []  # the live reminder.due event and the list are the notification
    now = utcnow()
    values = {
        "reminder_id": reminder.id,
        "user_id": recipient,
        "kind": kind,
        "due_at": reminder.due_at,
        "via": route.via,
        "channel": route.channel,
        "address": route.address,
        "status": "failed" if route.error else "pending",
        "error": route.error,
        "attempts": 0,
        "created_at": now,
        "claimed_at": None,
        "external_id": None,
        "sent_at": None,
    }
    conflict = ["reminder_id", "user_id", "kind", "due_at"]
    new_id = insert_ignore(conn, NOTIFICATIONS, values, conflict)
    if route.error:
        log.warning("notification_unroutable", user_id=recipient, via=route.via, error=route.error)
        return []
    return [new_id] if new_id is not None else []


def _claim(conn: Connection, notification_id: int) -> Any:
    now = utcnow()
    return conn.execute(
        update(NOTIFICATIONS)
        .where(
            NOTIFICATIONS.c.id == notification_id,
            or_(
                NOTIFICATIONS.c.status == "pending",
                (NOTIFICATIONS.c.status == "sending")
                & (NOTIFICATIONS.c.claimed_at < now - CLAIM_TIMEOUT),
            ),
            NOTIFICATIONS.c.attempts < MAX_ATTEMPTS,
        )
        .values(status="sending", claimed_at=now, attempts=NOTIFICATIONS.c.attempts + 1)
        .returning(*NOTIFICATIONS.c)
    ).first()


async def claim(db: Database, notification_id: int) -> Any:
    """Take the row for sending (pending, or claimed by a sender that has since died): the
    claimed row, or None when someone else has it or it is done."""
    return await db.run_write_retrying(_claim, notification_id)


def _finish(conn: Connection, notification_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == notification_id).values(values))


async def rendered(
    session: AsyncSession, settings: Settings, reminder: Reminder, kind: str
) -> Rendered:
    contact = await session.get(Contact, reminder.contact_id)
    card = (await contacts_to_dicts(session, [contact]))[0] if contact is not None else None
    lead = await session.get(Lead, reminder.lead_id)
    assignee = (
        await session.get(User, reminder.assignee_id) if reminder.assignee_id is not None else None
    )
    return render(kind, reminder, card, lead, assignee, settings.public_url)


async def carry(channel: Channel, row: Notification, message: Rendered, client: Any) -> SendResult:
    """Hand one notification to its carrier."""
    assert row.address is not None
    if row.via == "telegram":
        buttons = [(b.label, b.data, b.url) for b in message.buttons]
        notice = getattr(channel, "notice", None)
        if notice is None:
            return SendResult("failed", error=f"channel {channel.name} cannot send notices")
        result: SendResult = await notice(row.address, message.text, buttons, client)
        return result
    outbound = OutboundMessage(
        item_id=0,
        channel=channel.name,
        to=row.address,
        text=message.text,
        meta={"subject": message.subject, "notification_id": row.id},
    )
    return await channel.send(outbound, client)


async def send(
    db: Database,
    settings: Settings,
    channels: dict[str, Channel],
    client: Any,
    notification_id: int,
) -> str:
    """Send one outbox row if we can claim it; its final or retry state is written back."""
    row = await claim(db, notification_id)
    if row is None:
        return "skipped"
    async with db.read() as session:
        reminder = await session.get(Reminder, row.reminder_id)
        if reminder is None:
            return "gone"
        message = await rendered(session, settings, reminder, row.kind)
    channel = channels.get(row.channel or "")
    if channel is None:
        result = SendResult("failed", error=f"channel {row.channel!r} is no longer configured")
    else:
        try:
            result = await carry(channel, row, message, client)
        except Exception as exc:  # a carrier's bug must not leave the row claimed for a minute
            log.exception("notification_send_crashed", notification_id=notification_id)
            result = SendResult("failed", error=f"{type(exc).__name__}: {exc}", retryable=True)
    retry = result.status == "failed" and result.retryable and row.attempts < MAX_ATTEMPTS
    status = "pending" if retry else ("failed" if result.status == "failed" else "sent")
    values = {
        "status": status,
        "error": result.error,
        "external_id": result.external_id,
        "sent_at": utcnow() if status == "sent" else None,
        "claimed_at": None,
    }
    await db.run_write_retrying(_finish, notification_id, values)
    log.info(
        "notification",
        notification_id=notification_id,
        reminder_id=row.reminder_id,
        via=row.via,
        status=status,
        error=result.error,
    )
    return status


async def unsent(db: Database, limit: int = 500) -> list[int]:
    """Rows the sweep sends: pending for RETRY_AFTER (their sender is gone or waiting to
    retry), or claimed by a sender that died."""
    now = utcnow()
    async with db.read() as session:
        ids = await session.scalars(
            select(NOTIFICATIONS.c.id)
            .where(
                NOTIFICATIONS.c.status.in_(("pending", "sending")),
                NOTIFICATIONS.c.attempts < MAX_ATTEMPTS,
                or_(
                    (NOTIFICATIONS.c.status == "pending")
                    & (NOTIFICATIONS.c.created_at <= now - RETRY_AFTER),
                    NOTIFICATIONS.c.claimed_at < now - CLAIM_TIMEOUT,
                ),
            )
            .order_by(NOTIFICATIONS.c.created_at)
            .limit(limit)
        )
        return [int(i) for i in ids]


async def refresh(
    db: Database, settings: Settings, channels: dict[str, Channel], client: Any, reminder_id: int
) -> int:
    """Rewrite the Telegram messages about a reminder to show its state now (done, snoozed),
    without buttons that no longer apply; the number edited."""
    async with db.read() as session:
        reminder = await session.get(Reminder, reminder_id)
        if reminder is None:
            return 0
        rows = list(
            await session.scalars(
                select(Notification).where(
                    Notification.reminder_id == reminder_id,
                    Notification.via == "telegram",
                    Notification.status == "sent",
                    Notification.external_id.is_not(None),
                )
            )
        )
        messages = {
            kind: await rendered(session, settings, reminder, kind)
            for kind in {r.kind for r in rows}
        }
    edited = 0
    for row in rows:
        channel = channels.get(row.channel or "")
        notice = getattr(channel, "notice", None)
        chat_id, _, message_id = (row.external_id or "").partition(":")
        if notice is None or not message_id.isdigit():
            continue
        message = messages[row.kind]
        if row.due_at != reminder.due_at:  # an earlier round, before a snooze: no buttons
            message = Rendered(message.subject, message.text, ())
        buttons = [(b.label, b.data, b.url) for b in message.buttons]
        result = await notice(
            chat_id, message.text, buttons, client, edit_message_id=int(message_id)
        )
        if result.status == "sent":
            edited += 1
        else:
            log.warning("notification_edit_failed", notification_id=row.id, error=result.error)
    return edited
