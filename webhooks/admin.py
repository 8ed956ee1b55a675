"""Admin routes: import contacts from CSV, deactivate a user (their work goes to a colleague)."""

from __future__ import annotations

from aiohttp import web

from hub.auth.audit import record
from hub.auth.users import UserError, deactivate_user
from hub.leads.importer import ContactImportError, import_contacts
from webhooks.api import BadRequest, NotFound, int_param, read_json
from webhooks.context import RUNTIME
from webhooks.responses import client_ip, error, json_response
from webhooks.roles import require_role

MAX_IMPORT_BYTES = 20 * 1024 * 1024  # about 200k rows; larger files go through `hub import`


async def import_contacts_route(request: web.Request) -> web.Response:
    """POST /api/import/contacts?map=col=field&dry_run=1 with the CSV file as the body."""
    user = await require_role(request, "admin", "import.contacts")
    dry_run = request.query.get("dry_run", "").lower() in ("1", "true", "yes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_IMPORT_BYTES:
            return error(
                413,
                f"the CSV is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB; "
                "use `hub import contacts FILE.csv`",
            )
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the CSV must be UTF-8 text") from None
    if not text.strip():
        raise BadRequest("the body must be a CSV file with a header row")
    runtime = request.app[RUNTIME]
    try:
        summary = await import_contacts(
            runtime.db,
            text.splitlines(keepends=True),
            request.query.getall("map", []),
            runtime.settings.default_region,
            dry_run=dry_run,
        )
    except ContactImportError as exc:
        raise BadRequest(str(exc), "map") from None
    body = summary.to_dict()
    async with runtime.db.write() as session:
        meta = {k: v for k, v in body.items() if k not in ("rejected", "mapping")}
        await record(session, "import.contacts", user_id=user.id, ip=client_ip(request), meta=meta)
    return json_response(body, status=200 if dry_run else 201)


async def deactivate(request: web.Request) -> web.Response:
    """POST /api/users/{id}/deactivate {"successor_id"?}: nothing is deleted."""
    user_id = int_param(request.match_info["user_id"], "id")
    admin = await require_role(
        request, "admin", "user.deactivate", target_type="user", target_id=user_id
    )
    data = await read_json(request) if request.can_read_body else {}
    successor = data.get("successor_id")
    if successor is not None and (isinstance(successor, bool) or not isinstance(successor, int)):
        raise BadRequest("successor_id: must be a user id (an integer)", "successor_id")
    try:
        async with request.app[RUNTIME].db.write() as session:
            handover = await deactivate_user(
                session, user_id, successor, by_user_id=admin.id, ip=client_ip(request)
            )
    except LookupError:
        raise NotFound(f"user {user_id}") from None
    except UserError as exc:
        field = "successor_id" if str(exc).startswith("successor_id") else None
        status = 409 if "already deactivated" in str(exc) else 400
        return error(status, str(exc), field=field)
    return json_response(handover.to_dict())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/import/contacts", import_contacts_route)
    app.router.add_post("/api/users/{user_id}/deactivate", deactivate)
