"""Lead routes: PATCH /api/leads/{id} (stage, status, lost reason, assignee) and the pipelines."""

from __future__ import annotations

from aiohttp import web

import hub.leads.followups  # noqa: F401  (registers the follow-up rules on stage changes)
from hub.inbox.live import publish
from hub.leads.pipelines import pipeline_to_dict
from hub.leads.reminders import enqueue_dues
from hub.leads.stages import LeadChangeError, update_lead
from hub.models import Lead
from webhooks.api import current_user, int_param, read_json, require_sight
from webhooks.context import RUNTIME
from webhooks.responses import error, json_response


async def patch_lead(request: web.Request) -> web.Response:
    lead_id = int_param(request.match_info["lead_id"], "id")
    data = await read_json(request)
    runtime = request.app[RUNTIME]
    await require_sight(request, Lead, lead_id, "lead.update")
    try:
        async with runtime.db.write() as session:
            result = await update_lead(
                session, runtime.settings, lead_id, data, current_user(request)
            )
    except LeadChangeError as exc:
        return error(exc.status, str(exc), field=exc.field)
    await enqueue_dues(runtime, result.dues)  # committed: follow-up reminders' jobs
    await publish(runtime.redis, runtime.settings.redis_prefix, result.live)
    return json_response(result.lead)


async def list_pipelines(request: web.Request) -> web.Response:
    settings = request.app[RUNTIME].settings
    items = [pipeline_to_dict(p) for p in settings.pipelines.values()]
    return json_response({"items": items, "default": settings.leads.pipeline})


def add_routes(app: web.Application) -> None:
    app.router.add_patch("/api/leads/{lead_id}", patch_lead)
    app.router.add_get("/api/pipelines", list_pipelines)
