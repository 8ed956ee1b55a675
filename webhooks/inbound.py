"""Provider webhooks, one thin route for every channel: verify -> parse -> ingest -> answer."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from hub.channels.base import InboundEvent, InboundRequest, InvalidPayload, ProviderAnswer
from hub.inbox.calls import call_event_of
from hub.inbox.ingest import IngestResult, ingest
from hub.inbox.live import publish
from hub.inbox.status import apply_status_update, status_update_of
from hub.leads.acknowledge import acknowledgement
from hub.leads.pipelines import with_pipeline
from hub.leads.reminders import enqueue_dues
from hub.metrics import INBOUND_EVENTS, INGEST_SECONDS
from hub.notify.actions import apply_staff_action, staff_action_of
from hub.runtime import Runtime
from webhooks.calls import store_call
from webhooks.context import RUNTIME
from webhooks.responses import client_ip, error

log = structlog.get_logger(__name__)


def provider_url(request: web.Request) -> str:
    """The URL the provider called, as configured: behind a proxy the Host header is not ours
    to trust, and signatures (Twilio's) are computed over the public URL."""
    public = request.app[RUNTIME].settings.public_url
    base = public or f"{request.scheme}://{request.host}"
    return base + request.path_qs


async def receive(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    kind, name = request.match_info["type"], request.match_info["channel"]
    channel = runtime.channels.get(name)
    if channel is None or channel.type != kind:
        return error(404, f"no {kind} channel {name!r}")
    structlog.contextvars.bind_contextvars(channel=name)
    body = await request.read()
    inbound = InboundRequest(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        query=dict(request.query),
        remote=client_ip(request),
        url=provider_url(request),
    )
    if not channel.verify(inbound):
        INBOUND_EVENTS.labels(name, kind, "rejected").inc()
        log.warning("webhook_rejected", reason="verification failed", ip=client_ip(request))
        return error(channel.reject_status, "signature or secret does not match")
    try:
        events = channel.parse(inbound)
    except InvalidPayload as exc:
        INBOUND_EVENTS.labels(name, kind, "rejected").inc()
        return error(400, exc.reason, field=exc.field)
    reply: ProviderAnswer | None = None
    for event in events:
        if staff_action_of(event) is not None:  # a staff member's button or /start
            reply = await act(runtime, event)
        else:
            await store(runtime, event)
    return answer(reply or channel.ack(events))


async def act(runtime: Runtime, event: InboundEvent) -> ProviderAnswer:
    """Apply a staff action once; its answer goes back in the webhook reply."""
    outcome = await apply_staff_action(runtime.db, event)
    result = "duplicate" if outcome.duplicate else "stored"
    INBOUND_EVENTS.labels(event.channel, event.channel_type, result).inc()
    await enqueue_dues(runtime, outcome.dues)
    if outcome.refresh is not None:
        await runtime.enqueue_committed(
            "refresh_notices",
            outcome.refresh,
            job_id=f"refresh_notices:{outcome.refresh}:{event.external_id}",
        )
    await publish(runtime.redis, runtime.settings.redis_prefix, outcome.live)
    return outcome.answer


async def store(runtime: Runtime, event: InboundEvent) -> IngestResult:
    """Commit one event, count it, then push its live events (only after the commit)."""
    started = time.perf_counter()
    if status_update_of(event) is not None:  # a delivery report for an outbound item
        result = await apply_status_update(runtime.db, event)
    elif call_event_of(event) is not None:  # a call's progress: its item moves (issue 7)
        result = await store_call(runtime, event)
    else:
        result = await ingest(
            runtime.db,
            with_pipeline(event, runtime.settings),
            runtime.settings.default_region,
            runtime.settings.leads.callback_within,
            acknowledgement(runtime.settings, runtime.channels, event),
        )
    INGEST_SECONDS.labels(event.channel_type).observe(time.perf_counter() - started)
    outcome = "duplicate" if result.duplicate else "stored"
    INBOUND_EVENTS.labels(event.channel, event.channel_type, outcome).inc()
    log.info(
        "inbound_event",
        channel=event.channel,
        event_id=event.external_id,
        outcome=outcome,
        lead_id=result.lead_id,
    )
    if not result.duplicate and result.item_id is not None and event.attachments:
        # the worker fetches the files and keeps them under the data dir
        job_id = f"fetch_attachments:{result.item_id}"
        await runtime.enqueue_committed("fetch_attachments", result.item_id, job_id=job_id)
    await enqueue_dues(runtime, result.reminders)  # committed: the callback reminder's job
    for item_id in result.outbound:  # the acknowledgement (the stale-reply sweep backs up)
        await runtime.enqueue_committed("deliver", item_id, job_id=f"deliver:{item_id}")
    await publish(runtime.redis, runtime.settings.redis_prefix, result.live)
    return result


def answer(reply: ProviderAnswer) -> web.Response:
    return web.Response(
        status=reply.status,
        body=reply.body,
        content_type=reply.content_type,
        headers=dict(reply.headers),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/{type}/{channel}", receive)
    app.router.add_post("/webhooks/{type}/{channel}/{rest:.+}", receive)
