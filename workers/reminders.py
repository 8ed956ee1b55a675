"""Reminder jobs: fire one reminder at its due time; sweep what is due and unfired, escalate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from arq import Retry

from hub.inbox.live import publish
from hub.leads.reminders import LOOKAHEAD, due_soon, enqueue_dues, escalate_overdue, fire
from hub.metrics import REMINDERS_FIRED
from hub.runtime import Runtime

log = structlog.get_logger(__name__)
RUNTIME = "runtime"  # the same context key as workers.jobs
SWEEP_SECONDS = 5
FIRE_TRIES = 20


async def fire_reminder(ctx: dict[str, Any], reminder_id: int, due_iso: str) -> str:
    """Fire the reminder for the due time this job was queued for: the row's conditional
    update decides, so a duplicate job, a sweep or a second worker fires nothing more."""
    runtime: Runtime = ctx[RUNTIME]
    outcome = await fire(runtime.db, reminder_id, datetime.fromisoformat(due_iso))
    if outcome.wait is not None:  # ran before its time (clocks apart): try again then
        raise Retry(defer=max(outcome.wait, 0.05))
    if not outcome.fired:
        return "skipped"
    REMINDERS_FIRED.inc()
    log.info("reminder_fired", reminder_id=reminder_id, due_at=due_iso)
    await publish(runtime.redis, runtime.settings.redis_prefix, outcome.live)
    return "fired"


async def sweep_reminders(ctx: dict[str, Any]) -> str:
    """Cron, every few seconds: queue every pending reminder due within LOOKAHEAD, deferred to
    its due time (harmless for jobs already queued: the job id is derived from the due time),
    so a Redis flush or a lost job costs seconds; then escalate what stayed unanswered."""
    runtime: Runtime = ctx[RUNTIME]
    dues = await due_soon(runtime.db, LOOKAHEAD)
    await enqueue_dues(runtime, dues)
    escalated = await escalate_overdue(runtime.db, runtime.settings.leads.escalate_after)
    await publish(runtime.redis, runtime.settings.redis_prefix, escalated)
    return f"queued {len(dues)}, escalated {len(escalated)}"
