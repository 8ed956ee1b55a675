"""Files in replies: uploaded through POST /api/attachments, sent by the worker with the real
aiogram Bot as sendPhoto / sendDocument (the text as the caption when it fits), refused up
front where they cannot go."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from hub.db import Database
from hub.models import Conversation, TimelineItem
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import SECRET, config, payload
from tests.conftest import auth
from tests.workers.test_deliver import run_worker
from webhooks import uploads
from webhooks.context import RUNTIME


def png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as server:
        yield server


async def upload(client: Any, token: str, name: str, data: bytes, kind: str) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type=kind)
    response = await client.post("/api/attachments", data=form, headers=auth(token))
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def telegram_conversation(client: Any, db: Database) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    response = await client.post(
        "/webhooks/telegram/tg", data=json.dumps(payload("text")), headers=headers
    )
    assert response.status == 200
    async with db.read() as session:
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None
    return conversation.id


async def test_a_reply_with_a_photo_and_a_pdf_goes_out_as_sendphoto_and_senddocument(
    make_client: Any, db: Database, api: FakeBotAPI, token: str
) -> None:
    client = await make_client(channels={"tg": config(api_base=api.base)})
    conversation_id = await telegram_conversation(client, db)
    photo = await upload(client, token, "map.png", png(), "image/png")
    assert photo["content_type"] == "image/png" and photo["size"] == len(png())
    pdf = await upload(client, token, "price list.pdf", PDF, "application/pdf")

    reply = await client.post(
        f"/api/conversations/{conversation_id}/messages",
        json={
            "text": "Here is our map and prices",
            "attachments": [photo, {"sha256": pdf["sha256"]}],
        },
        headers=auth(token),
    )
    assert reply.status == 202, await reply.text()
    await run_worker(client.server.app[RUNTIME])
    assert [c.method for c in api.calls] == ["sendPhoto", "sendDocument"]
    assert api.calls[0].params["caption"] == "Here is our map and prices"
    assert "caption" not in api.calls[1].params
    assert [(m, n, d) for m, n, d in api.uploads] == [
        ("sendPhoto", "map.png", png()),
        ("sendDocument", "price list.pdf", PDF),
    ]
    async with db.read() as session:
        item = await session.get_one(TimelineItem, (await reply.json())["id"])
    assert item.status == "sent"
    assert [a["name"] for a in item.attachments] == ["map.png", "price list.pdf"]

    # A text too long for a caption goes first, on its own; a file alone needs no text.
    api.calls.clear()
    long_text = "word " * 300
    for body in ({"text": long_text, "attachments": [pdf]}, {"attachments": [pdf["url"]]}):
        response = await client.post(
            f"/api/conversations/{conversation_id}/messages", json=body, headers=auth(token)
        )
        assert response.status == 202, await response.text()
    await run_worker(client.server.app[RUNTIME])
    assert [c.method for c in api.calls] == ["sendMessage", "sendDocument", "sendDocument"]


async def test_bad_attachments_and_uploads_are_refused_with_the_reason(
    make_client: Any, db: Database, api: FakeBotAPI, token: str, monkeypatch: Any
) -> None:
    client = await make_client(channels={"tg": config(api_base=api.base)})
    conversation_id = await telegram_conversation(client, db)
    url = f"/api/conversations/{conversation_id}/messages"
    cases = [
        ({"text": "x", "attachments": ["0" * 64]}, "no uploaded file"),
        ({"text": "x", "attachments": "abc"}, "a list of uploaded files"),
        ({"text": "x", "attachments": [{"sha256": "../../etc/passwd"}]}, "no uploaded file"),
        ({"text": "x", "attachments": ["0" * 64] * 11}, "at most 10 files"),
        ({"text": "   "}, "text: required (or attachments)"),
    ]
    for body, reason in cases:
        response = await client.post(url, json=body, headers=auth(token))
        assert response.status == 400, body
        assert reason in (await response.json())["error"], body

    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="a.txt")
    response = await client.post("/api/attachments", data=form, headers=auth(token))
    assert response.status == 400 and "'file'" in (await response.json())["error"]
    response = await client.post("/api/attachments", json={"file": "x"}, headers=auth(token))
    assert response.status == 400
    assert (await client.post("/api/attachments", data=form)).status == 401
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1000)
    form = aiohttp.FormData()
    form.add_field("file", b"x" * 1001, filename="big.bin")
    response = await client.post("/api/attachments", data=form, headers=auth(token))
    assert response.status == 413
    async with db.read() as session:
        assert (
            list(
                await session.scalars(
                    select(TimelineItem.id).where(TimelineItem.direction == "out")
                )
            )
            == []
        )
