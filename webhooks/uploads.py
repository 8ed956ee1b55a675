"""POST /api/attachments: an operator uploads a file to send with a reply (multipart "file")."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from hub.inbox.attachments import store_bytes, stored_fields
from webhooks.context import RUNTIME
from webhooks.responses import error, json_response

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # what every channel that sends files accepts
CHUNK = 64 * 1024


def display_name(raw: str | None) -> str:
    """The file's own name, as the user sees it (spaces and any script kept): no path, no
    control characters; clients that percent-encode it (aiohttp does) are decoded."""
    name = unquote(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:120]
    return name or "attachment"


async def upload(request: web.Request) -> web.Response:
    """201 {name, content_type, size, sha256, url}: the reference to put in a reply's
    `attachments`. One file per request, at most 20 MB."""
    if not request.content_type.startswith("multipart/form-data"):
        return error(400, "send multipart/form-data with the file in a field named 'file'")
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and (not isinstance(part, BodyPartReader) or part.name != "file"):
            part = await reader.next()
    except (ValueError, AssertionError) as exc:
        return error(400, f"not a valid multipart body: {exc}")
    if part is None:
        return error(400, "file: required, a multipart field named 'file'", field="file")
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            return error(413, f"file: larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    if not data:
        return error(400, "file: empty", field="file")
    name = display_name(part.filename)
    kind = part.headers.get("Content-Type")
    data_dir = request.app[RUNTIME].settings.data_dir
    stored = await asyncio.to_thread(store_bytes, data_dir, bytes(data), kind, name)
    body = {"name": name, "content_type": stored.content_type} | stored_fields(stored)
    return json_response(body, status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/attachments", upload)
