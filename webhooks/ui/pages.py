"""The web inbox's pages (`/`, `/login`) and static files, under a strict Content-Security-Policy:
scripts and styles only from our own files, nothing inline, no framing by other sites."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

PACKAGE = resources.files("webhooks.ui")
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def template(name: str) -> str:
    return PACKAGE.joinpath("templates", name).read_text("utf-8")


PAGES = {"/": template("inbox.html"), "/login": template("login.html")}
STATIC = {
    entry.name: entry.read_bytes()
    for entry in PACKAGE.joinpath("static").iterdir()
    if entry.is_file() and any(entry.name.endswith(ext) for ext in STATIC_TYPES)
}


async def page(request: web.Request) -> web.Response:
    """The page itself needs no login: it holds no data, and its script sends whoever has no
    token in this tab to /login. Every piece of data comes from the API with the token."""
    return web.Response(
        text=PAGES[request.path], content_type="text/html", headers=SECURITY_HEADERS
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = STATIC.get(name)
    if body is None:
        raise web.HTTPNotFound(reason=f"no static file {name!r}")
    suffix = name[name.rfind(".") :]
    return web.Response(
        body=body,
        content_type=STATIC_TYPES[suffix],
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
    )


def add_routes(app: web.Application) -> None:
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/ui/static/{name}", static)
