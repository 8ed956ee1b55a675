"""GET /api/audit for admins: who did what to which record, from where, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from hub.auth.audit import audit_to_dict
from hub.models import AuditEntry, User
from webhooks.api import BadRequest, int_param, keyset_by_id, page_limit, require_role, split_page
from webhooks.context import RUNTIME
from webhooks.responses import json_response

TEXT_FILTERS = {"target_type": AuditEntry.target_type, "target_id": AuditEntry.target_id}


def time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name}: an ISO 8601 time like 2026-11-25T10:00:00Z", name) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


async def list_audit(request: web.Request) -> web.Response:
    """?action= (exact, or a prefix ending in "." or "*": "export.", "contact.*"), user_id=,
    target_type=, target_id=, ip=, since=, until= (ISO times); limit/cursor paging."""
    await require_role(request, "admin", "audit.read", target_type="audit")
    limit = page_limit(request)
    query: Any = select(AuditEntry, User.email).outerjoin(User, User.id == AuditEntry.user_id)
    if action := request.query.get("action"):
        if action.endswith(("*", ".")):
            prefix = action.rstrip("*")
            query = query.where(AuditEntry.action.startswith(prefix, autoescape=True))
        else:
            query = query.where(AuditEntry.action == action)
    if user_id := request.query.get("user_id"):
        query = query.where(AuditEntry.user_id == int_param(user_id, "user_id"))
    for name, column in TEXT_FILTERS.items():
        if value := request.query.get(name):
            query = query.where(column == value)
    if ip := request.query.get("ip"):
        query = query.where(AuditEntry.ip == ip)
    if (since := time_param(request, "since")) is not None:
        query = query.where(AuditEntry.created_at >= since)
    if (until := time_param(request, "until")) is not None:
        query = query.where(AuditEntry.created_at < until)
    query = keyset_by_id(query, AuditEntry, request).limit(limit + 1)
    async with request.app[RUNTIME].db.read() as session:
        rows = list((await session.execute(query)).all())
    page = split_page(rows, limit, lambda row: [row[0].id])
    items = [audit_to_dict(row[0]) | {"user_email": row[1]} for row in page.rows]
    return json_response({"items": items, "next_cursor": page.next_cursor})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/audit", list_audit)
