"""Outbound delivery: a queued reply goes out through its conversation's channel, once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.channels.base import Attachment, Channel, OutboundMessage, SendResult
from hub.db import Database
from hub.inbox.attachments import API_PATH, find_stored, stored_fields
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import conversation_to_dict, item_to_dict
from hub.leads.reminders import close_for_contact
from hub.metrics import OUTBOUND_MESSAGES
from hub.models import Conversation, Identity, Lead, TimelineItem, utcnow

log = structlog.get_logger(__name__)


class DeliveryError(Exception):
    """A transient failure: the job is retried later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


MAX_REPLY_CHARS = 20_000
MAX_REPLY_FILES = 10
# A queued reply whose job went missing (Redis flushed, enqueue failed) is re-queued this long
# after it was written; the deliver job itself is idempotent.
STALE_QUEUED = timedelta(seconds=30)


class ReplyError(ValueError):
    """A reply that cannot be queued as asked; the message names what to fix."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


def checked_text(text: str, files: Sequence[Mapping[str, Any]] = ()) -> str:
    text = text.strip()
    if not text and not files:
        raise ReplyError("text: required (or attachments)", "text")
    if len(text) > MAX_REPLY_CHARS:
        raise ReplyError(f"text: longer than {MAX_REPLY_CHARS} characters", "text")
    return text


def stored_attachments(data_dir: Path, value: Any) -> list[dict[str, Any]]:
    """A reply's `attachments`: files uploaded with POST /api/attachments, each given as
    {"sha256"} or {"url"} of the upload's answer; the timeline rows for them."""
    if value is None or value == []:
        return []
    if not isinstance(value, list):
        raise ReplyError('attachments: a list of uploaded files ({"sha256": ...})', "attachments")
    if len(value) > MAX_REPLY_FILES:
        raise ReplyError(f"attachments: at most {MAX_REPLY_FILES} files", "attachments")
    rows = []
    for number, ref in enumerate(value, start=1):
        where = f"attachments[{number}]"
        if isinstance(ref, str):
            ref = {"url": ref} if ref.startswith(API_PATH) else {"sha256": ref}
        if not isinstance(ref, dict):
            raise ReplyError(f"{where}: an object with the upload's sha256", "attachments")
        digest = str(ref.get("sha256") or str(ref.get("url") or "").removeprefix(API_PATH))
        stored = find_stored(data_dir, digest)
        if stored is None:
            raise ReplyError(
                f"{where}: no uploaded file {digest[:64]!r}; upload it with POST /api/attachments",
                "attachments",
            )
        given = ref.get("name")
        name = given if isinstance(given, str) and given.strip() else stored.name
        rows.append(
            {"name": name[:120], "content_type": stored.content_type} | stored_fields(stored)
        )
    return rows


async def queue_reply(
    session: AsyncSession,
    channels: dict[str, Channel],
    conversation: Conversation,
    text: str,
    author_id: int,
    files: Sequence[Mapping[str, Any]] = (),
) -> tuple[TimelineItem, list[LiveEvent]]:
    """Write an operator's reply as a queued outbound item (the worker sends it) and mark the
    lead's first response. Refused up front when the conversation's channel cannot send (or
    cannot send files, when there are some)."""
    text = checked_text(text, files)
    channel = channels.get(conversation.channel)
    if channel is None or "outbound" not in channel.capabilities:
        raise ReplyError(
            f"conversation {conversation.id} is on {conversation.channel_type} "
            f"channel {conversation.channel!r}, which cannot send replies: answer on another "
            "of the contact's channels"
        )
    if files and "send_files" not in channel.capabilities:
        raise ReplyError(
            f"attachments: {conversation.channel_type} channel {conversation.channel!r} cannot "
            "send files; send a text, or answer on another of the contact's channels",
            "attachments",
        )
    now = utcnow()
    item = TimelineItem(
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel=conversation.channel,
        channel_type=conversation.channel_type,
        direction="out",
        kind="message",
        text=text,
        attachments=[dict(f) for f in files],
        status="queued",
        author_id=author_id,
        created_at=now,
    )
    session.add(item)
    conversation.last_message_at = now
    if conversation.status == "closed":
        conversation.status = "open"
    lead = await session.scalar(
        select(Lead).where(Lead.contact_id == conversation.contact_id, Lead.status == "open")
    )
    if lead is not None and lead.first_response_at is None:
        lead.first_response_at = now
    await close_for_contact(session, conversation.contact_id)  # answered: callback done
    await session.flush()
    return item, [
        LiveEvent("message.created", item_to_dict(item)),
        LiveEvent("conversation.updated", conversation_to_dict(conversation)),
    ]


async def add_note(
    session: AsyncSession, conversation: Conversation, text: str, author_id: int
) -> tuple[TimelineItem, list[LiveEvent]]:
    """An internal note: on the timeline for the team, never sent to the contact."""
    text = checked_text(text)
    item = TimelineItem(
        conversation_id=conversation.id,
        contact_id=conversation.contact_id,
        channel=conversation.channel,
        channel_type=conversation.channel_type,
        direction="internal",
        kind="note",
        text=text,
        status="internal",
        author_id=author_id,
    )
    session.add(item)
    await session.flush()
    return item, [LiveEvent("message.created", item_to_dict(item))]


async def stale_queued_items(db: Database) -> list[int]:
    """Replies still queued well after they were written: their job was lost."""
    async with db.read() as session:
        rows = await session.scalars(
            select(TimelineItem.id)
            .where(
                TimelineItem.direction == "out",
                TimelineItem.status == "queued",
                TimelineItem.created_at < utcnow() - STALE_QUEUED,
            )
            .order_by(TimelineItem.id)
            .limit(500)
        )
        return list(rows)


async def deliver_item(
    db: Database, channels: dict[str, Channel], item_id: int, client: Any
) -> list[LiveEvent]:
    """Send one queued outbound item; its status becomes sent or failed (with the reason).
    Raises DeliveryError for failures worth retrying. Live events are returned for after commit."""
    async with db.read() as session:
        item = await session.get(TimelineItem, item_id)
        if item is None or item.direction != "out" or item.status != "queued":
            return []  # already delivered, or never ours to send: a re-run is a no-op
        conversation = (
            await session.get(Conversation, item.conversation_id) if item.conversation_id else None
        )
        channel = channels.get(item.channel)
        to = conversation.thread_key if conversation else None
        if to is None and channel is not None and channel.address_kind is not None:
            to = await session.scalar(
                select(Identity.value)
                .where(
                    Identity.contact_id == item.contact_id,
                    Identity.kind == channel.address_kind,
                    Identity.valid.is_(True),
                )
                .order_by(Identity.id)
            )
        message = OutboundMessage(
            item_id=item.id,
            channel=item.channel,
            to=to or "",
            text=item.text,
            attachments=tuple(
                Attachment(
                    name=str(a.get("name") or "attachment"),
                    content_type=str(a.get("content_type") or "application/octet-stream"),
                    size=a.get("size"),
                    url=a.get("url"),
                )
                for a in item.attachments or []
            ),
            meta=dict(item.meta or {}),
        )
    if channel is None:
        result = SendResult(status="failed", error=f"channel {item.channel!r} is not configured")
    elif "outbound" not in channel.capabilities:
        result = SendResult(status="failed", error=f"{channel.type} channels cannot send replies")
    elif not message.to:
        result = SendResult(status="failed", error="no address for this contact on this channel")
    else:
        result = await channel.send(message, client)
    if result.status == "failed" and result.retryable:
        raise DeliveryError(result.error or "temporary failure", result.retry_after)
    async with db.write() as session:
        # Locked: a delivery report committed meanwhile must not be overwritten with "sent".
        item = await session.get_one(TimelineItem, item_id, with_for_update=True)
        if item.status != "queued":
            return []
        item.status = result.status
        item.error = result.error
        if result.external_id:
            item.external_id = result.external_id
        await session.flush()
        body = item_to_dict(item)
    OUTBOUND_MESSAGES.labels(item.channel, result.status).inc()
    log.info("delivered", channel=item.channel, item_id=item_id, status=result.status)
    return [LiveEvent("message.updated", body)]
