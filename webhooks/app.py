"""The aiohttp application: middlewares (request id, JSON errors, auth) and every route."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hub.runtime import Runtime
from webhooks import (
    admin,
    api,
    audit,
    calls,
    events,
    exports,
    forms,
    health,
    inbound,
    leads,
    openapi,
    reminders,
    reports,
    security,
    uploads,
    users,
)
from webhooks.context import RUNTIME
from webhooks.responses import error, json_response
from webhooks.ui import pages

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 1024 * 1024  # providers' webhooks are small; forms set their own lower limit


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id (kept from X-Request-ID when a proxy set one) in its logs."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if 0 < len(incoming) <= 64 else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects are answers, not errors
        response = _json_http_error(exc)
    except HttpProcessingError as exc:
        if not 400 <= exc.code < 500:
            raise
        # A body aiohttp could not parse (a multipart part with a broken header line): the
        # client's fault, whichever route read it.
        response = error(exc.code, f"malformed request: {exc.message}"[:300])
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        response = error(500, "internal error", request_id=request_id)
    response.headers["X-Request-ID"] = request_id
    elapsed = (time.perf_counter() - started) * 1000
    log.debug(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        ms=round(elapsed, 2),
    )
    return response


def _json_http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (404 route, 405, 413) become the JSON shape every client expects."""
    if exc.content_type == "application/json":
        try:
            return json_response(json.loads(exc.text or ""), status=exc.status)
        except ValueError:
            pass
    reason = exc.reason if not exc.text or exc.text.startswith(str(exc.status)) else exc.text
    if exc.status == 413:
        reason = "the body is too large"
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return error(exc.status, reason, headers=headers)


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[request_context, security.ip_allowlist, api.authenticate],
        client_max_size=MAX_BODY,
    )
    app[RUNTIME] = runtime
    forms.add_routes(app)
    inbound.add_routes(app)
    api.add_routes(app)
    reminders.add_routes(app)
    uploads.add_routes(app)
    health.add_routes(app)
    events.add_routes(app)
    pages.add_routes(app)
    leads.add_routes(app)  # issue 10: lead stages, reports, import, export, users
    reports.add_routes(app)
    calls.add_routes(app)  # issue 7: caller card, call comments
    exports.add_routes(app)
    admin.add_routes(app)
    users.add_routes(app)  # issue 9: users, audit log, OpenAPI
    audit.add_routes(app)
    openapi.add_routes(app)

    async def close_runtime(app: web.Application) -> None:
        await app[RUNTIME].close()

    app.on_cleanup.append(close_runtime)
    return app
