"""E-mail in the worker: one poller per e-mail channel, started with the worker (a Redis lock
makes one worker poll each mailbox), and `poll_mailbox`, a job that reads a mailbox once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog

from hub.channels.email import Email
from hub.channels.email.poller import MailboxPoller
from hub.channels.email.sync import AfterCommit, Ingest, sync_mailbox
from hub.channels.email.transport import Mailbox
from hub.inbox.ingest import IngestResult
from hub.inbox.live import publish
from hub.leads.reminders import enqueue_dues
from hub.runtime import Runtime

log = structlog.get_logger(__name__)
RUNTIME = "runtime"  # the same context key as workers.jobs
POLLERS = "mail_pollers"


def email_channels(runtime: Runtime) -> list[Email]:
    return [c for c in runtime.channels.values() if isinstance(c, Email)]


def _ingest(runtime: Runtime) -> Ingest:
    settings = runtime.settings
    return Ingest(
        settings.default_region, settings.leads.callback_within, settings.data_dir, settings
    )


def _after_commit(runtime: Runtime) -> AfterCommit:
    async def after_commit(results: Sequence[IngestResult]) -> None:
        for result in results:
            await enqueue_dues(runtime, result.reminders)
            for item_id in result.outbound:  # an acknowledgement the ingest queued
                await runtime.enqueue_committed("deliver", item_id, job_id=f"deliver:{item_id}")
        live = [event for result in results for event in result.live]
        await publish(runtime.redis, runtime.settings.redis_prefix, live)

    return after_commit


async def poll_mailbox(ctx: dict[str, Any], channel_name: str) -> str:
    """Read one mailbox once (for `hub` commands and tests; the pollers run continuously)."""
    runtime: Runtime = ctx[RUNTIME]
    channel = runtime.channels.get(channel_name)
    if not isinstance(channel, Email):
        return f"no e-mail channel {channel_name!r}"
    mailbox = Mailbox(channel.imap)
    await asyncio.to_thread(mailbox.connect)
    try:
        outcome = await sync_mailbox(
            runtime.db, channel, mailbox, _ingest(runtime), _after_commit(runtime)
        )
    finally:
        await asyncio.to_thread(mailbox.close)
    return f"stored {outcome.stored}, duplicates {outcome.duplicates}, rejected {outcome.rejected}"


async def start_mail_pollers(ctx: dict[str, Any]) -> None:
    """Worker start-up: bind each e-mail channel to the database (its replies need the thread
    history) and start its poller."""
    runtime: Runtime = ctx[RUNTIME]
    pollers: list[tuple[MailboxPoller, asyncio.Task[None]]] = []
    for channel in email_channels(runtime):
        channel.bind(runtime.db)
        poller = MailboxPoller(
            runtime.db,
            runtime.redis,
            runtime.settings.redis_prefix,
            channel,
            _ingest(runtime),
            _after_commit(runtime),
        )
        task = asyncio.create_task(poller.run(), name=f"poll-mailbox-{channel.name}")
        pollers.append((poller, task))
        log.info("mail_poller_started", channel=channel.name, mailbox=channel.describe())
    ctx[POLLERS] = pollers


async def stop_mail_pollers(ctx: dict[str, Any], grace: float = 10.0) -> None:
    pollers: list[tuple[MailboxPoller, asyncio.Task[None]]] = ctx.pop(POLLERS, [])
    for poller, _task in pollers:
        poller.stop()
    tasks = [task for _poller, task in pollers]
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
