"""arq jobs: each takes the shared context built once in on_startup."""

from __future__ import annotations

from typing import Any

from arq import Retry

from hub.inbox.attachments import fetch_item_attachments
from hub.inbox.live import publish
from hub.inbox.replies import DeliveryError, deliver_item, stale_queued_items
from hub.runtime import Runtime

RUNTIME = "runtime"
FETCH_TRIES = 5


async def deliver(ctx: dict[str, Any], item_id: int) -> str:
    """Send one queued reply. Transient failures retry with backoff; permanent ones mark the
    item failed with the reason, so a blocked recipient never causes a retry storm."""
    runtime: Runtime = ctx[RUNTIME]
    try:
        events = await deliver_item(runtime.db, runtime.channels, item_id, ctx.get("http"))
    except DeliveryError as exc:
        tries = int(ctx.get("job_try", 1))
        raise Retry(defer=exc.retry_after or min(300, 2**tries)) from exc
    await publish(runtime.redis, runtime.settings.redis_prefix, events)
    return events[0].data["status"] if events else "skipped"


async def requeue_stale_replies(ctx: dict[str, Any]) -> int:
    """Cron: a reply whose job was lost (Redis flushed, enqueue failed after commit) is queued
    again; the job id makes this harmless for replies whose job is only waiting."""
    runtime: Runtime = ctx[RUNTIME]
    items = await stale_queued_items(runtime.db)
    for item_id in items:
        await runtime.enqueue("deliver", item_id, job_id=f"deliver:{item_id}")
    return len(items)


async def fetch_attachments(ctx: dict[str, Any], item_id: int) -> str:
    """Fetch an inbound item's files from the provider and keep them under the data dir. A
    provider that is down is tried again with backoff; on the last try, and for a refusal or a
    file too large, the attachment gets an `error` in words. Files already kept are skipped."""
    runtime: Runtime = ctx[RUNTIME]
    tries = int(ctx.get("job_try", 1))
    outcome = await fetch_item_attachments(
        runtime.db,
        runtime.channels,
        runtime.settings.data_dir,
        item_id,
        ctx.get("http"),
        final=tries >= FETCH_TRIES,
    )
    await publish(runtime.redis, runtime.settings.redis_prefix, outcome.live)
    if outcome.retry is not None:
        raise Retry(defer=outcome.retry.retry_after or min(300, 2**tries))
    return f"stored {outcome.stored}, failed {outcome.failed}"
