"""GET /api/export/{contacts|leads|timeline}?format=csv|json: admin only, audited with the IP,
streamed batch by batch so memory stays flat whatever the table size."""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from hub.auth.audit import record
from hub.models import utcnow
from hub.reports.export import COLUMNS, KINDS, export_rows, flatten
from hub.reports.report import csv_lines
from webhooks.context import RUNTIME
from webhooks.responses import client_ip, error
from webhooks.roles import require_role

log = structlog.get_logger(__name__)
FORMATS = {"csv": "text/csv", "json": "application/json"}


async def export(request: web.Request) -> web.StreamResponse:
    kind = request.match_info["kind"]
    fmt = request.query.get("format", "csv")
    user = await require_role(request, "admin", f"export.{kind}", target_type="export")
    if kind not in KINDS:
        return error(404, f"no export {kind[:40]!r}; one of {', '.join(KINDS)}")
    if fmt not in FORMATS:
        return error(400, f"format: one of {', '.join(FORMATS)}", field="format")
    runtime = request.app[RUNTIME]
    ip = client_ip(request)
    async with runtime.db.write() as session:  # audited before a byte leaves
        await record(
            session,
            f"export.{kind}",
            user_id=user.id,
            ip=ip,
            target_type="export",
            target_id=kind,
            meta={"format": fmt},
        )
    name = f"{kind}-{utcnow():%Y%m%d-%H%M%S}.{fmt}"
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{FORMATS[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    rows = 0
    if fmt == "csv":
        await response.write("".join(csv_lines(COLUMNS[kind], [])).encode())
    else:
        await response.write(b"[")
    async for batch in export_rows(runtime.db, kind):
        if fmt == "csv":
            lines = csv_lines(COLUMNS[kind], (flatten(kind, r) for r in batch))
            text = "".join(list(lines)[1:])  # the header went first
        else:
            text = ",".join(json.dumps(r, ensure_ascii=False, default=str) for r in batch)
            text = ("," if rows else "") + text
        rows += len(batch)
        await response.write(text.encode())
    if fmt == "json":
        await response.write(b"]")
    await response.write_eof()
    log.info("exported", kind=kind, format=fmt, rows=rows, user_id=user.id)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/export/{kind}", export)
