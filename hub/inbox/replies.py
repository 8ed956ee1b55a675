"""Outbound delivery: a queued reply goes out through its conversation's channel, once."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select

from hub.channels.base import Channel, OutboundMessage, SendResult
from hub.db import Database
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import item_to_dict
from hub.metrics import OUTBOUND_MESSAGES
from hub.models import Conversation, Identity, TimelineItem

log = structlog.get_logger(__name__)


class DeliveryError(Exception):
    """A transient failure: the job is retried later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


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
