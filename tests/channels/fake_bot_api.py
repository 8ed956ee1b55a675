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
    # Files the bot may fetch: file_id -> bytes (getFile, then GET /file/bot<token>/<path>).
    files: dict[str, bytes] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)  # file paths fetched
    uploads: list[tuple[str, str, bytes]] = field(default_factory=list)  # (method, name, bytes)

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
        params: dict[str, str] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):  # an upload: its name; the bytes kept aside
                params[key] = value.filename
                self.uploads.append((method, value.filename, value.file.read()))
            else:
                params[key] = str(value)
        self.calls.append(Call(token, method, params))
        if self.queued:
            status, body = self.queued.pop(0)
            return web.json_response(body, status=status)
        if method == "getFile" and params.get("file_id") not in self.files:
            body = {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}
            return web.json_response(body, status=400)
        return web.json_response({"ok": True, "result": self.result(method, params)})

    @staticmethod
    def file_path(file_id: str) -> str:
        return f"photos/file_{abs(hash(file_id)) % 1000}.jpg"

    async def download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.downloads.append(path)
        for file_id, data in self.files.items():
            if self.file_path(file_id) == path:
                return web.Response(body=data, content_type="application/octet-stream")
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    def result(self, method: str, params: dict[str, str]) -> Any:
        if method == "sendMessage":
            return {
                "message_id": next(self._ids),
                "from": {"id": 7000000001, "is_bot": True, "first_name": "Shop Bot"},
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "date": int(time.time()),
                "text": params["text"],
            }
        if method in ("sendPhoto", "sendDocument"):
            message: dict[str, Any] = {
                "message_id": next(self._ids),
                "from": {"id": 7000000001, "is_bot": True, "first_name": "Shop Bot"},
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "date": int(time.time()),
            }
            if "caption" in params:
                message["caption"] = params["caption"]
            if method == "sendPhoto":
                message["photo"] = [
                    {"file_id": "AgAD1", "file_unique_id": "u1", "width": 90, "height": 60}
                ]
            else:
                message["document"] = {
                    "file_id": "BQAD1",
                    "file_unique_id": "u2",
                    "file_name": params["document"],
                }
            return message
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
        if method == "getFile":
            file_id = params["file_id"]
            return {
                "file_id": file_id,
                "file_unique_id": f"u{abs(hash(file_id)) % 1000}",
                "file_size": len(self.files[file_id]),
                "file_path": self.file_path(file_id),
            }
        if method == "getWebhookInfo":
            return {"has_custom_certificate": False, "pending_update_count": 3} | self.webhook
        return True


@asynccontextmanager
async def fake_bot_api() -> AsyncIterator[FakeBotAPI]:
    api = FakeBotAPI()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api.handle)
    app.router.add_get("/file/bot{token}/{path:.+}", api.download)
    server = TestServer(app)
    await server.start_server()
    api.base = str(server.make_url("")).rstrip("/")
    try:
        yield api
    finally:
        await server.close()
