"""The worker, declared: functions, cron jobs and start-up; `hub worker` and `hub up` run it."""

from __future__ import annotations

from typing import Any

import aiohttp
from arq import func
from arq.worker import Worker

from hub.log import configure_logging
from hub.runtime import Runtime, queue_name
from hub.settings import load_settings
from workers.jobs import RUNTIME, deliver

FUNCTIONS = [func(deliver, name="deliver", max_tries=8)]


async def on_startup(ctx: dict[str, Any]) -> None:
    if RUNTIME not in ctx:  # started by the arq CLI: read the configuration here
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        ctx[RUNTIME] = Runtime.open(settings)
    ctx["http"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))


async def on_shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()


class WorkerSettings:
    """For `arq workers.settings.WorkerSettings`; `hub worker` builds the same via make_worker."""

    functions = FUNCTIONS
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
        "max_jobs": 20,
        "job_timeout": 120,
        "health_check_key": f"{queue_name(runtime.settings)}:health-check",
    }
    options.update(overrides)
    return Worker(**options)
