"""JSON answers and errors, the same shape everywhere: {"error": reason, ...}."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web


def dumps(data: Any) -> str:
    return json.dumps(data, default=str, ensure_ascii=False)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def error(
    status: int, reason: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    details = {k: v for k, v in extra.items() if v is not None}
    return json_response({"error": reason, **details}, status=status, headers=headers)


def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"
