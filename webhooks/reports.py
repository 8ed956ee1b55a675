"""Reports for managers: GET /api/reports/{name}?from=&to= (JSON or ?format=csv); the /reports
page that draws them and the /admin/import page (scripts and styles are files, never inline)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from hub.reports.registry import REPORTS, run_report
from hub.reports.report import ReportError, csv_lines, parse_period
from webhooks.context import RUNTIME
from webhooks.responses import error, json_response
from webhooks.roles import require_role

STATIC_DIR = resources.files("webhooks").joinpath("reports_static")
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
FORMATS = ("json", "csv")


async def get_report(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    await require_role(request, "manager", "reports.view", target_type="report", target_id=name)
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        return error(400, f"format: one of {', '.join(FORMATS)}", field="format")
    runtime = request.app[RUNTIME]
    params = {k: v for k, v in request.query.items() if k not in ("from", "to", "format")}
    try:
        period = parse_period(request.query.get("from"), request.query.get("to"))
        async with runtime.db.read() as session:
            report = await run_report(session, runtime.settings, name, period, params)
    except ReportError as exc:
        return error(exc.status, str(exc), field=exc.field)
    if fmt == "json":
        return json_response(report.to_dict())
    day = f"{period.start:%Y%m%d}-{period.end:%Y%m%d}"
    return web.Response(
        text="".join(csv_lines(report.columns, report.rows)),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{day}.csv"'},
    )


async def list_reports(request: web.Request) -> web.Response:
    await require_role(request, "manager", "reports.view")
    return json_response({"items": list(REPORTS)})


PAGES = {"/reports": "reports.html", "/admin/import": "import.html"}


async def page(request: web.Request) -> web.Response:
    """No data in the pages: their scripts fetch it with the tab's token (the API checks the
    role), so the pages themselves need no login."""
    html = STATIC_DIR.joinpath(PAGES[request.path]).read_text("utf-8")
    return web.Response(text=html, content_type="text/html", headers=PAGE_HEADERS)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    entry = STATIC_DIR.joinpath(name)
    if suffix not in STATIC_TYPES or "/" in name or not entry.is_file():
        raise web.HTTPNotFound(reason=f"no static file {name[:40]!r}")
    return web.Response(
        body=entry.read_bytes(),
        content_type=STATIC_TYPES[suffix],
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/reports", list_reports)
    app.router.add_get("/api/reports/{name}", get_report)
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/reports/static/{name}", static)
