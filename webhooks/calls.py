"""Calls: storing a provider's call event (for the webhook route), the caller card for a screen
pop (`GET /api/calls/lookup?phone=`), and operators' comments on a call."""

from __future__ import annotations

import structlog
from aiohttp import web

from hub.channels.base import InboundEvent
from hub.inbox.calls import add_comment, apply_call, caller_card
from hub.inbox.ingest import IngestResult
from hub.inbox.live import LiveEvent, publish
from hub.leads.phones import looks_like_phone
from hub.leads.pipelines import with_pipeline
from hub.runtime import Runtime
from webhooks.api import BadRequest, NotFound, current_user, int_param, read_json
from webhooks.context import RUNTIME
from webhooks.responses import json_response

log = structlog.get_logger(__name__)
MAX_COMMENT = 2000
MAX_CARD_ITEMS = 50


async def store_call(runtime: Runtime, event: InboundEvent) -> IngestResult:
    """Commit one call event; the reminders it marked done get their notices rewritten. The
    caller (webhooks/inbound.py) queues the new reminders' jobs and publishes the live events."""
    settings = runtime.settings
    outcome = await apply_call(
        runtime.db,
        with_pipeline(event, settings),
        settings.default_region,
        settings.leads.callback_within,
    )
    for reminder_id in outcome.closed:
        await runtime.enqueue_committed(
            "refresh_notices",
            reminder_id,
            job_id=f"refresh_notices:{reminder_id}:{event.external_id}",
        )
    return outcome.result


async def lookup(request: web.Request) -> web.Response:
    """GET /api/calls/lookup?phone=&items=: the caller card for a number in any format."""
    runtime = request.app[RUNTIME]
    phone = request.query.get("phone", "").strip()
    if not phone:
        raise BadRequest("phone: required, the caller's number in any format", "phone")
    if not looks_like_phone(phone):
        raise BadRequest(f"phone: {phone[:40]!r} is not a phone number", "phone")
    items = int_param(request.query.get("items", "10"), "items")
    if items > MAX_CARD_ITEMS:
        raise BadRequest(f"items: from 1 to {MAX_CARD_ITEMS}", "items")
    async with runtime.db.read() as session:
        card = await caller_card(session, phone, runtime.settings.default_region, items=items)
    return json_response(card)


async def post_comment(request: web.Request) -> web.Response:
    """POST /api/calls/{item_id}/comments {"text"}: an operator's note on the call itself."""
    runtime = request.app[RUNTIME]
    item_id = int_param(request.match_info["item_id"], "item_id")
    data = await read_json(request)
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("text: required, the comment", "text")
    if len(text) > MAX_COMMENT:
        raise BadRequest(f"text: longer than {MAX_COMMENT} characters", "text")
    item = await add_comment(runtime.db, item_id, text.strip(), current_user(request).id)
    if item is None:
        raise NotFound(f"call {item_id}")
    await publish(
        runtime.redis, runtime.settings.redis_prefix, [LiveEvent("message.updated", item)]
    )
    return json_response(item, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/calls/lookup", lookup)
    app.router.add_post("/api/calls/{item_id}/comments", post_comment)
