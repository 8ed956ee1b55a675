"""Operator replies through the real deliver job on a real arq worker, sent by aiogram's Bot to
a local fake Bot API server: the right chat, long texts split, 429 retried, 403 failed once."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import structlog
from sqlalchemy import select

from hub.channels.base import InboundRequest, OutboundMessage
from hub.channels.telegram import Telegram
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import Conversation, TimelineItem
from hub.runtime import Runtime
from hub.settings import Settings
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import SECRET, TOKEN, channel, config, payload
from tests.workers.test_deliver import run_worker

CHAT = "123456789"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as server:
        yield server


async def conversation_of_a_telegram_user(db: Database) -> int:
    request = InboundRequest(
        method="POST",
        path="/webhooks/telegram/tg",
        headers={"x-telegram-bot-api-secret-token": SECRET},
        body=json.dumps(payload("text")).encode(),
    )
    (event,) = channel().parse(request)
    result = await ingest(db, event, "UZ")
    assert result.conversation_id is not None
    return result.conversation_id


async def queue_reply(db: Database, conversation_id: int, text: str) -> int:
    async with db.write() as session:
        conversation = await session.get_one(Conversation, conversation_id)
        item = TimelineItem(
            conversation_id=conversation_id,
            contact_id=conversation.contact_id,
            channel="tg",
            channel_type="telegram",
            direction="out",
            kind="message",
            text=text,
            status="queued",
        )
        session.add(item)
        await session.flush()
        return item.id


async def deliver(settings: Settings, api: FakeBotAPI, *item_ids: int) -> None:
    runtime = Runtime.open(replace(settings, channels={"tg": config(api_base=api.base)}))
    try:
        for item_id in item_ids:
            await runtime.enqueue("deliver", item_id, job_id=f"deliver:{item_id}")
        await run_worker(runtime)
    finally:
        await runtime.close()


async def item(db: Database, item_id: int) -> TimelineItem:
    async with db.read() as session:
        return await session.get_one(TimelineItem, item_id)


async def test_a_reply_reaches_the_chat_as_send_message_and_is_sent(
    settings: Settings, db: Database, api: FakeBotAPI
) -> None:
    reply = await queue_reply(db, await conversation_of_a_telegram_user(db), "We deliver there")
    await deliver(settings, api, reply)
    (call,) = api.calls
    assert (call.token, call.method) == (TOKEN, "sendMessage")
    assert (call.params["chat_id"], call.params["text"]) == (CHAT, "We deliver there")
    sent = await item(db, reply)
    assert (sent.status, sent.external_id, sent.error) == ("sent", f"{CHAT}:5001", None)


async def test_a_blocked_bot_fails_the_item_with_the_reason_and_no_retry(
    settings: Settings, db: Database, api: FakeBotAPI
) -> None:
    api.blocked()
    reply = await queue_reply(db, await conversation_of_a_telegram_user(db), "Hello?")
    await deliver(settings, api, reply)
    assert len(api.calls) == 1
    failed = await item(db, reply)
    assert failed.status == "failed"
    assert failed.error is not None and "bot was blocked by the user" in failed.error


async def test_flood_control_is_retried_after_the_time_telegram_asks(
    settings: Settings, db: Database, api: FakeBotAPI
) -> None:
    api.flood_wait(1)
    reply = await queue_reply(db, await conversation_of_a_telegram_user(db), "Soon")
    await deliver(settings, api, reply)
    assert len(api.sent()) == 2
    assert (await item(db, reply)).status == "sent"


async def test_a_long_reply_is_split_at_4096_characters(
    settings: Settings, db: Database, api: FakeBotAPI
) -> None:
    text = " ".join(["sofa"] * 1500)  # 7499 characters
    reply = await queue_reply(db, await conversation_of_a_telegram_user(db), text)
    api.flood_wait(1)  # on the first part: the whole job is retried, nothing was sent yet
    await deliver(settings, api, reply)
    parts = [c.params["text"] for c in api.sent()[1:]]
    assert len(parts) == 2 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text
    sent = await item(db, reply)
    assert (sent.status, sent.external_id) == ("sent", f"{CHAT}:5001")


def message(text: str, to: str = CHAT) -> OutboundMessage:
    return OutboundMessage(item_id=1, channel="tg", to=to, text=text)


async def test_a_flood_wait_between_parts_is_waited_out_not_resent(api: FakeBotAPI) -> None:
    tg = channel(api_base=api.base)
    api.queued.append(
        (200, {"ok": True, "result": api.result("sendMessage", {"chat_id": CHAT, "text": "1"})})
    )
    api.flood_wait(1)
    result = await tg.send(message("x" * 5000), None)
    assert result.status == "sent"
    assert [len(c.params["text"]) for c in api.sent()] == [4096, 904, 904]


async def test_a_failure_after_the_first_part_is_final_to_avoid_repeats(api: FakeBotAPI) -> None:
    tg = channel(api_base=api.base)
    api.queued.append(
        (200, {"ok": True, "result": api.result("sendMessage", {"chat_id": CHAT, "text": "1"})})
    )
    api.fail(400, "Bad Request: message text is empty")
    result = await tg.send(message("x" * 5000), None)
    assert (result.status, result.retryable) == ("failed", False)
    assert result.external_id is not None
    assert (
        result.error
        == "sent 1 of 2 parts, then: Telegram refused: Bad Request: message text is empty"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("shared", [False, True])
async def test_an_unreachable_api_is_retryable_and_the_token_never_shows(shared: bool) -> None:
    tg = channel(api_base=f"http://127.0.0.1:{closed_port()}")
    with structlog.testing.capture_logs() as logs:
        if shared:
            async with aiohttp.ClientSession() as client:
                result = await tg.send(message("hi"), client)
                assert not client.closed  # the worker's client is the worker's to close
        else:
            result = await tg.send(message("hi"), None)
    assert (result.status, result.retryable) == ("failed", True)
    assert result.error is not None and result.error.startswith("Telegram unreachable")
    assert TOKEN not in result.error and TOKEN not in repr(logs)
    assert TOKEN.split(":")[1] not in repr(logs)


async def test_an_unknown_chat_fails_without_retry(api: FakeBotAPI) -> None:
    api.fail(400, "Bad Request: chat not found")
    result = await channel(api_base=api.base).send(message("hi", to="42"), None)
    assert (result.status, result.retryable) == ("failed", False)
    assert result.error == "Telegram refused: Bad Request: chat not found"


async def test_the_conversation_chat_is_the_address(db: Database) -> None:
    conversation_id = await conversation_of_a_telegram_user(db)
    async with db.read() as session:
        thread = await session.scalar(
            select(Conversation.thread_key).where(Conversation.id == conversation_id)
        )
    assert thread == CHAT and Telegram.address_kind == "telegram"


async def test_an_answer_that_is_not_bot_api_json_is_retryable(api: FakeBotAPI) -> None:
    api.queued.append((502, {"html": "<h1>Bad Gateway</h1>"}))
    result = await channel(api_base=api.base).send(message("hi"), None)
    assert (result.status, result.retryable) == ("failed", True)
    assert result.error == "Telegram answered something that is not Bot API JSON"


async def test_a_flood_wait_that_never_ends_between_parts_stops_after_three_tries(
    api: FakeBotAPI,
) -> None:
    api.succeed()
    for _ in range(3):
        api.flood_wait(1)
    result = await channel(api_base=api.base).send(message("x" * 5000), None)
    assert result.status == "failed" and not result.retryable
    assert result.error is not None and result.error.startswith("sent 1 of 2 parts, then:")
    assert len(api.sent()) == 4
