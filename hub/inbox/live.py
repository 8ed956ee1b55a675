"""Live events: published after commit to a Redis stream (the events, kept for replay) and a
pub/sub signal that there is something new to read (for fan-out)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

EVENT_TYPES = (
    "message.created",
    "message.updated",
    "conversation.updated",
    "lead.created",
    "reminder.due",
    "reminder.updated",
    "call.ringing",
)
STREAM_MAXLEN = 10_000  # enough for a reconnecting browser to catch up on


@dataclass(frozen=True)
class LiveEvent:
    type: str
    data: dict[str, Any]


def stream_key(prefix: str) -> str:
    return f"{prefix}events"


async def publish(redis: Redis, prefix: str, events: Sequence[LiveEvent]) -> None:
    """Best effort: the event is already committed, so a Redis outage loses only the push;
    the inbox reloads what it missed when it reconnects."""
    if not events:
        return
    key = stream_key(prefix)
    # The stream holds the events; pub/sub only says "read the stream", once per batch, so a
    # burst (10,000 reminders due at once) cannot overflow a subscriber's output buffer and
    # get it disconnected by Redis.
    signal = json.dumps({"count": len(events), "types": sorted({e.type for e in events})})
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for event in events:
                payload = json.dumps({"type": event.type, "data": event.data}, default=str)
                pipe.xadd(key, {"event": payload}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.publish(key, signal)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("live_publish_failed", error=str(exc), count=len(events))
