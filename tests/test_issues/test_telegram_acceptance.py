"""Issue 4's acceptance, end to end over HTTP: webhook in, operator reply out through the API,
the real worker and aiogram against a fake Bot API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from hub.auth.users import create_user
from hub.db import Database
from hub.models import Contact, Conversation, Lead, TimelineItem
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import SECRET, config, payload
from tests.conftest import PASSWORD, auth, count
from tests.workers.test_deliver import run_worker
from webhooks.context import RUNTIME

HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as server:
        yield server


async def test_one_person_on_telegram_and_a_reply_through_the_api(
    make_client: Any, db: Database, api: FakeBotAPI
) -> None:
    client = await make_client(channels={"tg": config(api_base=api.base)})
    for name in ("text", "photo_caption", "edited_message", "contact_own"):
        for _ in range(2):  # every update delivered twice
            response = await client.post(
                "/webhooks/telegram/tg", data=json.dumps(payload(name)), headers=HEADERS
            )
            assert response.status == 200, await response.text()
    assert await count(db, Contact, Contact.merged_into_id.is_(None)) == 1
    assert await count(db, Conversation) == 1
    assert await count(db, Lead) == 1
    assert await count(db, TimelineItem) == 3  # text (edited in place), photo, contact card
    async with db.read() as session:
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None

    async with db.write() as session:
        await create_user(session, "op@example.com", PASSWORD, "operator")
    login = await client.post(
        "/api/auth/login", json={"email": "op@example.com", "password": PASSWORD}
    )
    token = (await login.json())["token"]
    runtime = client.server.app[RUNTIME]

    reply = await client.post(
        f"/api/conversations/{conversation.id}/messages",
        json={"text": "Yes, we deliver"},
        headers=auth(token),
    )
    assert reply.status == 202
    await run_worker(runtime)
    (call,) = api.sent()
    assert call.params["chat_id"] == conversation.thread_key
    assert call.params["text"] == "Yes, we deliver"
    async with db.read() as session:
        sent = await session.get_one(TimelineItem, (await reply.json())["id"])
    assert sent.status == "sent"

    api.blocked()
    refused = await client.post(
        f"/api/conversations/{conversation.id}/messages",
        json={"text": "Are you there?"},
        headers=auth(token),
    )
    await run_worker(runtime)
    async with db.read() as session:
        failed = await session.get_one(TimelineItem, (await refused.json())["id"])
    assert failed.status == "failed"
    assert failed.error is not None and "blocked" in failed.error
    assert len(api.sent()) == 2  # no retry storm
