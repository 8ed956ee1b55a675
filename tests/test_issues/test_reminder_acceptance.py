"""Issue 8's acceptance: a form lead's callback reminder reaches the assignee's Telegram through
the real aiogram Bot (against the fake Bot API) when due, with Done / Snooze buttons; pressing
Done through the real webhook marks it done and rewrites the message."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hub.auth.users import create_user
from hub.db import Database
from hub.models import Contact, Notification, Reminder, utcnow
from hub.settings import LeadsConfig
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import SECRET, config, payload
from tests.conftest import PASSWORD, auth, count
from webhooks.context import RUNTIME
from workers.settings import make_worker, stop_worker

HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
MANAGER_TG = 555000111


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as server:
        yield server


def start_command(update_id: int, text: str, user_id: int = MANAGER_TG) -> dict[str, Any]:
    body = payload("text")
    body["update_id"] = update_id
    message = body["message"]
    message["text"] = text
    message["message_id"] = update_id % 1000
    message["from"] |= {"id": user_id, "first_name": "Olga", "username": "olga_ops"}
    message["chat"] |= {"id": user_id, "first_name": "Olga", "username": "olga_ops"}
    return body


def press(update_id: int, data: str, message_id: int, user_id: int = MANAGER_TG) -> dict[str, Any]:
    body = payload("callback_query")
    body["update_id"] = update_id
    query = body["callback_query"]
    query["id"] = f"q{update_id}"
    query["data"] = data
    query["from"] |= {"id": user_id}
    query["message"]["chat"] |= {"id": user_id}
    query["message"]["message_id"] = message_id
    return body


async def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def test_a_due_callback_reaches_telegram_and_done_closes_it(
    make_client: Any, settings: Any, db: Database, api: FakeBotAPI
) -> None:
    leads = LeadsConfig(callback_within=timedelta(seconds=2))
    client = await make_client(channels={"tg": config(api_base=api.base)}, leads=leads)
    runtime = client.server.app[RUNTIME]
    async with db.write() as session:
        await create_user(session, "olga@example.com", PASSWORD, "operator", "Olga")
    login = await client.post(
        "/api/auth/login", json={"email": "olga@example.com", "password": PASSWORD}
    )
    token = (await login.json())["token"]

    # Olga links her Telegram: the code from her profile, sent to the bot as /start <code>.
    prefs = await (await client.get("/api/me/notifications", headers=auth(token))).json()
    assert prefs["via"] == "auto" and prefs["telegram"]["linked"] is False
    code = prefs["telegram"]["link_code"]
    linked = await client.post(
        "/webhooks/telegram/tg",
        data=json.dumps(start_command(900001, f"/start {code}")),
        headers=HEADERS,
    )
    reply = await linked.json()
    assert reply["method"] == "sendMessage" and "olga@example.com" in reply["text"]
    assert await count(db, Contact) == 0  # staff linking is not a customer's message
    prefs = await (await client.get("/api/me/notifications", headers=auth(token))).json()
    assert prefs["telegram"]["linked"] is True and prefs["telegram"]["link_code"] != code
    reused = await client.post(
        "/webhooks/telegram/tg",
        data=json.dumps(start_command(900002, f"/start {code}", user_id=999)),
        headers=HEADERS,
    )
    assert "unknown or already used" in (await reused.json())["text"]

    worker = make_worker(runtime, poll_delay=0.05)
    task = asyncio.create_task(worker.async_run())
    try:
        posted = await client.post(
            "/forms/callback", json={"name": "Dilnoza", "phone": "+998901234567"}
        )
        assert posted.status == 201, await posted.text()
        async with db.read() as session:
            reminder = await session.scalar(select(Reminder))
        assert reminder is not None and reminder.status == "pending"

        notices = await wait_for(lambda: api.sent())
        late = (utcnow() - reminder.due_at).total_seconds()
        (notice,) = notices
        assert notice.params["chat_id"] == str(MANAGER_TG)
        assert "Dilnoza" in notice.params["text"] and "+998901234567" in notice.params["text"]
        keyboard = json.loads(notice.params["reply_markup"])["inline_keyboard"][0]
        assert [b["text"] for b in keyboard] == ["Done", "Snooze 15 min"]
        done_data = keyboard[0]["callback_data"]
        assert done_data == f"hub:reminder:{reminder.id}:done"
        print(f"notified {late:.2f} s after the due time")

        message_id = 5001
        stranger = await client.post(
            "/webhooks/telegram/tg",
            data=json.dumps(press(900010, done_data, message_id, user_id=424242)),
            headers=HEADERS,
        )
        assert "not linked" in (await stranger.json())["text"]
        async with db.read() as session:
            assert (await session.get_one(Reminder, reminder.id)).status == "notified"

        for attempt in range(2):  # Telegram redelivers the same update
            pressed = await client.post(
                "/webhooks/telegram/tg",
                data=json.dumps(press(900011, done_data, message_id)),
                headers=HEADERS,
            )
            answer = await pressed.json()
            assert answer["method"] == "answerCallbackQuery"
            assert answer["callback_query_id"] == "q900011"
            assert answer["text"] == ("Marked done" if attempt == 0 else "Already done")
        async with db.read() as session:
            assert (await session.get_one(Reminder, reminder.id)).status == "done"
            sent = await session.scalar(select(Notification))
        assert sent is not None and sent.status == "sent"
        assert sent.external_id == f"{MANAGER_TG}:{message_id}"

        (edit,) = await wait_for(lambda: api.sent("editMessageText"))
        assert edit.params["chat_id"] == str(MANAGER_TG)
        assert edit.params["message_id"] == str(message_id)
        assert "✅ Done" in edit.params["text"]
        assert "inline_keyboard" not in edit.params.get("reply_markup", "")
    finally:
        await stop_worker(worker)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
