"""Reminder jobs: fire one reminder at its due time and notify; sweep what is due and unfired,
escalate, and send what the notification outbox still holds; rewrite Telegram notices."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from arq import Retry

from hub.inbox.live import publish
from hub.leads.followups import reengage
from hub.leads.reminders import LOOKAHEAD, due_soon, enqueue_dues, escalate_overdue, fire
from hub.metrics import REMINDERS_FIRED
from hub.notify import outbox
from hub.runtime import Runtime

log = structlog.get_logger(__name__)
RUNTIME = "runtime"  # the same context key as workers.jobs
SWEEP_SECONDS = 5
FIRE_TRIES = 20


async def fire_reminder(ctx: dict[str, Any], reminder_id: int, due_iso: str) -> str:
    """Fire the reminder for the due time this job was queued for: the row's conditional
    update decides, so a duplicate job, a sweep or a second worker fires nothing more. The
    notifications written with the firing go out at once; the sweep sends what this misses."""
    runtime: Runtime = ctx[RUNTIME]
    settings = runtime.settings
    outcome = await fire(runtime.db, reminder_id, datetime.fromisoformat(due_iso), settings)
    if outcome.wait is not None:  # ran before its time (clocks apart): try again then
        raise Retry(defer=max(outcome.wait, 0.05))
    if not outcome.count:
        return "skipped"
    REMINDERS_FIRED.inc(outcome.count)
    log.info("reminders_fired", reminder_id=reminder_id, due_at=due_iso, count=outcome.count)
    await publish(runtime.redis, settings.redis_prefix, outcome.live)
    await send_all(ctx, outcome.notifications)
    return f"fired {outcome.count}"


async def send_all(ctx: dict[str, Any], ids: Sequence[int]) -> list[str]:
    runtime: Runtime = ctx[RUNTIME]
    return list(
        await asyncio.gather(
            *(
                outbox.send(runtime.db, runtime.settings, runtime.channels, ctx.get("http"), i)
                for i in ids
            )
        )
    )


async def send_notification(ctx: dict[str, Any], notification_id: int) -> str:
    """One outbox row, for the sweep: whoever claims it first sends it."""
    statuses = await send_all(ctx, [notification_id])
    return statuses[0]


async def refresh_notices(ctx: dict[str, Any], reminder_id: int) -> str:
    """After done, snooze or cancel: the Telegram notices about it show the new state."""
    runtime: Runtime = ctx[RUNTIME]
    edited = await outbox.refresh(
        runtime.db, runtime.settings, runtime.channels, ctx["http"], reminder_id
    )
    return f"edited {edited}"


async def reengage_customers(ctx: dict[str, Any]) -> str:
    """Cron, every 10 minutes: won customers quiet for `[leads] reengage_after` get a reminder."""
    runtime: Runtime = ctx[RUNTIME]
    quiet_for = runtime.settings.leads.reengage_after
    if quiet_for is None:
        return "off"
    dues = await reengage(runtime.db, quiet_for)
    await enqueue_dues(runtime, dues)
    return f"planned {len(dues)}"


async def sweep_reminders(ctx: dict[str, Any]) -> str:
    """Cron, every few seconds: queue every pending reminder due within LOOKAHEAD, deferred to
    its due time (harmless for jobs already queued: the job id is derived from the due time),
    so a Redis flush or a lost job costs seconds; then escalate what stayed unanswered, and
    queue the outbox rows whose sender is gone."""
    runtime: Runtime = ctx[RUNTIME]
    dues = await due_soon(runtime.db, LOOKAHEAD)
    await enqueue_dues(runtime, dues)
    escalated = await escalate_overdue(
        runtime.db, runtime.settings.leads.escalate_after, runtime.settings
    )
    await publish(runtime.redis, runtime.settings.redis_prefix, escalated.live)
    await send_all(ctx, escalated.notifications)
    stale = await outbox.unsent(runtime.db)
    for notification_id in stale:
        await runtime.enqueue_committed(
            "send_notification", notification_id, job_id=f"notification:{notification_id}"
        )
    return f"queued {len(dues)}, escalated {len(escalated.live)}, resent {len(stale)}"
