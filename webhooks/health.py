"""Health and metrics: /healthz names what is down, /metrics is Prometheus text."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from hub.channels.email.sync import mailbox_health
from hub.metrics import render
from webhooks.context import RUNTIME
from webhooks.responses import json_response

CHECK_TIMEOUT = 3.0


async def healthz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(runtime.db.ping(), CHECK_TIMEOUT)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}: {exc}"[:300]
    try:
        await asyncio.wait_for(runtime.redis.ping(), CHECK_TIMEOUT)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}: {exc}"[:300]
    down = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, Any] = {"status": "ok" if not down else "down", "checks": checks}
    if down:
        body["error"] = f"{', '.join(down)} not answering"
    mailboxes = [name for name, channel in runtime.channels.items() if channel.type == "email"]
    if mailboxes and checks["database"] == "ok":  # a failing mailbox is shown, not a 503
        body["channels"] = await mailbox_health(runtime.db, mailboxes)
    return json_response(body, status=503 if down else 200)


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=render())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
