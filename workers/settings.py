"""The worker, declared: functions, cron jobs and start-up; `hub worker` and `hub up` run it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from arq import cron, func
from arq.cron import CronJob
from arq.worker import Worker

from hub.log import configure_logging
from hub.runtime import Runtime, queue_name
from hub.settings import load_settings
from workers.jobs import FETCH_TRIES, RUNTIME, deliver, fetch_attachments, requeue_stale_replies
from workers.mail import poll_mailbox, start_mail_pollers, stop_mail_pollers
from workers.reminders import (
    FIRE_TRIES,
    SWEEP_SECONDS,
    fire_reminder,
    reengage_customers,
    refresh_notices,
    send_notification,
    sweep_reminders,
)

FUNCTIONS = [
    func(deliver, name="deliver", max_tries=8),
    func(fetch_attachments, name="fetch_attachments", max_tries=FETCH_TRIES),
    # no result kept: a job that gave up can be queued again by the sweep under its id
    func(fire_reminder, name="fire_reminder", max_tries=FIRE_TRIES, keep_result=0),
    func(send_notification, name="send_notification", max_tries=3, keep_result=0),
    func(refresh_notices, name="refresh_notices", max_tries=3, keep_result=0),
    func(poll_mailbox, name="poll_mailbox", max_tries=3, keep_result=0),
]


async def on_startup(ctx: dict[str, Any]) -> None:
    if RUNTIME not in ctx:  # started by the arq CLI: read the configuration here
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        ctx[RUNTIME] = Runtime.open(settings)
    ctx["http"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    await start_mail_pollers(ctx)


async def on_shutdown(ctx: dict[str, Any]) -> None:
    await stop_mail_pollers(ctx)
    await ctx["http"].close()


def cron_jobs(prefix: str) -> list[CronJob]:
    """Periodic sweeps; named with the Redis prefix, since arq keys cron runs by name and
    several hubs may share one Redis."""
    return [
        cron(
            requeue_stale_replies,
            name=f"{prefix}requeue_stale_replies",
            second={0, 30},
            run_at_startup=True,
        ),
        cron(
            sweep_reminders,
            name=f"{prefix}sweep_reminders",
            second=set(range(0, 60, SWEEP_SECONDS)),
            run_at_startup=True,
        ),
        cron(
            reengage_customers,
            name=f"{prefix}reengage_customers",
            minute=set(range(0, 60, 10)),
            second={15},
        ),
    ]


class WorkerSettings:
    """For `arq workers.settings.WorkerSettings`; `hub worker` builds the same via make_worker."""

    functions = FUNCTIONS
    cron_jobs = cron_jobs("hub:")
    on_startup = on_startup
    on_shutdown = on_shutdown


def make_worker(runtime: Runtime, **overrides: Any) -> Worker:
    options: dict[str, Any] = {
        "functions": FUNCTIONS,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_pool": runtime.redis,
        "queue_name": queue_name(runtime.settings),
        "ctx": {RUNTIME: runtime},
        "handle_signals": False,  # the entrypoint owns signals and stops us cleanly
        "max_jobs": 50,
        # arq waits this long between looks at the queue: a due reminder waits at most this.
        "poll_delay": 0.1,
        "job_timeout": 120,
        "health_check_key": f"{queue_name(runtime.settings)}:health-check",
        "cron_jobs": cron_jobs(runtime.settings.redis_prefix),
    }
    options.update(overrides)
    return Worker(**options)


async def stop_worker(worker: Worker, grace: float = 10.0) -> None:
    """Stop taking jobs, give running ones `grace` seconds to finish, then cancel the rest
    (they stay queued and run again: every job here is idempotent). The Redis pool belongs to
    the runtime and stays open, unlike arq's own close()."""
    worker.allow_pick_jobs = False
    running = [t for t in worker.tasks.values() if not t.done()]
    if running:
        await asyncio.wait(running, timeout=grace)
    for task in worker.tasks.values():
        if not task.done():
            task.cancel()
    if worker.main_task is not None and not worker.main_task.done():
        worker.main_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.main_task
    with contextlib.suppress(Exception):
        await worker.pool.delete(worker.health_check_key)
    if worker.on_shutdown is not None and "http" in worker.ctx:
        await worker.on_shutdown(worker.ctx)
