"""The reminders API: list, create, done, snooze, cancel; jobs are queued after commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.access import visible_assigned
from hub.inbox.live import LiveEvent, publish
from hub.leads.reminders import (
    STATUSES,
    Due,
    ReminderError,
    cancel,
    create_reminder,
    enqueue_dues,
    list_query,
    mark_done,
    parse_minutes,
    reminder_to_dict,
    snooze,
)
from hub.models import Reminder
from hub.notify.prefs import PrefsError, load_prefs, prefs_to_dict, update_prefs
from webhooks.api import (
    BadRequest,
    current_user,
    int_param,
    keyset_by_id,
    page_limit,
    read_json,
    require_sight,
    split_page,
)
from webhooks.context import RUNTIME
from webhooks.responses import error, json_response

log = structlog.get_logger(__name__)


def _error(exc: ReminderError) -> web.Response:
    """400 naming the field, 404 for an unknown lead or reminder, 409 for a closed reminder."""
    return error(exc.status, str(exc), field=exc.field)


async def list_reminders(request: web.Request) -> web.Response:
    """GET /api/reminders?status=&assignee=me|none|<id>: newest first, paged by id."""
    limit = page_limit(request)
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status: one of {', '.join(STATUSES)}", "status")
    assignee, unassigned = None, False
    if raw := request.query.get("assignee"):
        if raw == "me":
            assignee = current_user(request).id
        elif raw == "none":
            unassigned = True
        else:
            assignee = int_param(raw, "assignee")
    query = list_query(status, assignee, unassigned)
    if (visible := visible_assigned(current_user(request), Reminder.assignee_id)) is not None:
        query = query.where(visible)  # operators: their own and unassigned reminders
    query = keyset_by_id(query, Reminder, request)
    async with request.app[RUNTIME].db.read() as session:
        rows = list(await session.scalars(query.limit(limit + 1)))
    page = split_page(rows, limit, lambda r: [r.id])
    return json_response(
        {"items": [reminder_to_dict(r) for r in page.rows], "next_cursor": page.next_cursor}
    )


async def _apply(
    request: web.Request,
    action: Callable[[AsyncSession], Awaitable[Reminder]],
    status: int = 200,
) -> web.Response:
    """Run one change in a transaction, then (committed) queue the job of a pending reminder,
    rewrite its Telegram notices and tell the open inboxes."""
    runtime = request.app[RUNTIME]
    try:
        async with runtime.db.write() as session:
            reminder = await action(session)
            body = reminder_to_dict(reminder)
            due = Due(reminder.id, reminder.due_at) if reminder.status == "pending" else None
    except ReminderError as exc:
        return _error(exc)
    if due is not None:
        await enqueue_dues(runtime, [due])
    if status == 200:  # a change to an existing reminder: notices about it are out of date
        await runtime.enqueue_committed(
            "refresh_notices",
            body["id"],
            job_id=f"refresh_notices:{body['id']}:{body['status']}:{body['due_at']}",
        )
    event = LiveEvent("reminder.updated", body | {"by_user_id": current_user(request).id})
    await publish(runtime.redis, runtime.settings.redis_prefix, [event])
    return json_response(body, status=status)


def _reminder_id(request: web.Request) -> int:
    return int_param(request.match_info["reminder_id"], "reminder_id")


async def post_reminder(request: web.Request) -> web.Response:
    data: dict[str, Any] = await read_json(request)
    return await _apply(request, lambda session: create_reminder(session, data), status=201)


async def post_done(request: web.Request) -> web.Response:
    reminder_id = _reminder_id(request)
    await require_sight(request, Reminder, reminder_id, "reminder.update")
    return await _apply(request, lambda session: mark_done(session, reminder_id))


async def post_cancel(request: web.Request) -> web.Response:
    reminder_id = _reminder_id(request)
    await require_sight(request, Reminder, reminder_id, "reminder.update")
    return await _apply(request, lambda session: cancel(session, reminder_id))


async def post_snooze(request: web.Request) -> web.Response:
    reminder_id = _reminder_id(request)
    await require_sight(request, Reminder, reminder_id, "reminder.update")
    data = await read_json(request)
    try:
        minutes = parse_minutes(data.get("minutes"))
    except ReminderError as exc:
        return _error(exc)
    return await _apply(request, lambda session: snooze(session, reminder_id, minutes))


async def get_my_notifications(request: web.Request) -> web.Response:
    """GET /api/me/notifications: where my reminders go, and my Telegram link code."""
    runtime = request.app[RUNTIME]
    async with runtime.db.write() as session:
        prefs = await load_prefs(session, current_user(request).id)
        body = prefs_to_dict(prefs, runtime.settings)
    return json_response(body)


async def patch_my_notifications(request: web.Request) -> web.Response:
    """PATCH /api/me/notifications {"via", "phone", "new_link_code", "unlink_telegram"}."""
    runtime = request.app[RUNTIME]
    data = await read_json(request)
    try:
        async with runtime.db.write() as session:
            prefs = await update_prefs(session, current_user(request), data, runtime.settings)
            body = prefs_to_dict(prefs, runtime.settings)
    except PrefsError as exc:
        return error(400, str(exc), field=exc.field or None)
    return json_response(body)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/me/notifications", get_my_notifications)
    r.add_patch("/api/me/notifications", patch_my_notifications)
    r.add_get("/api/reminders", list_reminders)
    r.add_post("/api/reminders", post_reminder)
    r.add_post("/api/reminders/{reminder_id}/done", post_done)
    r.add_post("/api/reminders/{reminder_id}/snooze", post_snooze)
    r.add_post("/api/reminders/{reminder_id}/cancel", post_cancel)
