"""A local Bot API server speaking Telegram's wire protocol: records every call and answers
with real result shapes, or with the errors queued for it (429 flood wait, 403 blocked)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Call:
    token: str
    method: str
    params: dict[str, str]


@dataclass
class FakeBotAPI:
    calls: list[Call] = field(default_factory=list)
    # Answers given before the default one, in order: (HTTP status, JSON body).
    queued: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    base: str = ""
    webhook: dict[str, Any] = field(default_factory=lambda: {"url": ""})
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(5001))

    def fail(self, status: int, description: str, **parameters: Any) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        self.queued.append((status, body))

    def succeed(self, chat_id: str = "123456789") -> None:
        """An explicit success, to put before a queued failure."""
        result = self.result("sendMessage", {"chat_id": chat_id, "text": "..."})
        self.queued.append((200, {"ok": True, "result": result}))

    def flood_wait(self, seconds: int) -> None:
        self.fail(429, f"Too Many Requests: retry after {seconds}", retry_after=seconds)

    def blocked(self) -> None:
        self.fail(403, "Forbidden: bot was blocked by the user")

    def sent(self, method: str = "sendMessage") -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        self.calls.append(Call(token, method, params))
        if self.queued:
            status, body = self.queued.pop(0)
            return web.json_response(body, status=status)
        return web.json_response({"ok": True, "result": self.result(method, params)})

    def result(self, method: str, params: dict[str, str]) -> Any:
        if method == "sendMessage":
            return {
                "message_id": next(self._ids),
                "from": {"id": 7000000001, "is_bot": True, "first_name": "Shop Bot"},
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "date": int(time.time()),
                "text": params["text"],
            }
        if method == "getMe":
            return {
                "id": 7000000001,
                "is_bot": True,
                "first_name": "Shop Bot",
                "username": "shop_example_bot",
            }
        if method == "setWebhook":
            self.webhook = {
                "url": params["url"],
                "allowed_updates": json.loads(params.get("allowed_updates", "[]")),
            }
        if method == "getWebhookInfo":
            return {"has_custom_certificate": False, "pending_update_count": 3} | self.webhook
        return True


@asynccontextmanager
async def fake_bot_api() -> AsyncIterator[FakeBotAPI]:
    api = FakeBotAPI()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    server = TestServer(app)
    await server.start_server()
    api.base = str(server.make_url("")).rstrip("/")
    try:
        yield api
    finally:
        await server.close()
