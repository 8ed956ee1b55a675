"""GET /api/events on the real app and Redis: live events from real Telegram webhooks, replay
after Last-Event-ID, keep-alive pings, per-role visibility, fan-out across two web processes."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from hub.auth.tokens import issue_token
from hub.auth.users import create_user
from hub.db import Database
from hub.inbox.live import stream_key
from hub.models import Conversation, User
from hub.runtime import Runtime
from hub.settings import Settings
from tests.channels.test_telegram import SECRET, config, payload
from tests.conftest import PASSWORD, MakeClient, auth, sign_in
from webhooks.app import make_app
from webhooks.events import PING_SECONDS, RECHECK_SECONDS, Event

WAIT = 10  # generous: a bound that only a broken stream reaches, not a speed measurement


@dataclass
class Sse:
    """One server-sent event as the browser's EventSource would see it."""

    event: str
    data: Any
    id: str | None


class Stream:
    """Reads an open text/event-stream response event by event; comments are kept apart."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self) -> Sse:
        fields: dict[str, str] = {}
        data: list[str] = []
        async with asyncio.timeout(WAIT):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data or fields:
                        return Sse(
                            fields.get("event", "message"),
                            json.loads("\n".join(data)),
                            fields.get("id"),
                        )
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(": ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value

    async def until(self, event: str, **match: Any) -> Sse:
        """The next event of this type whose data has these values (others are skipped)."""
        while True:
            sse = await self.next()
            if sse.event == event and all(sse.data.get(k) == v for k, v in match.items()):
                return sse

    async def close(self) -> None:
        self.response.close()


def update_from(user_id: int, update_id: int, text: str) -> dict[str, Any]:
    """The real text.json Update, from another person or with another message."""
    body = copy.deepcopy(payload("text"))
    body["update_id"] = update_id
    body["message"]["message_id"] = update_id % 100000
    body["message"]["text"] = text
    for key in ("from", "chat"):
        body["message"][key]["id"] = user_id
        body["message"][key]["first_name"] = f"Person{user_id % 1000}"
    body["message"]["from"]["username"] = f"user{user_id}"
    body["message"]["chat"]["username"] = f"user{user_id}"
    return body


async def telegram(client: TestClient[Any, Any], body: dict[str, Any]) -> None:
    response = await client.post(
        "/webhooks/telegram/tg",
        json=body,
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status == 200, await response.text()


async def login(client: TestClient[Any, Any], db: Database, email: str, role: str) -> str:
    async with db.write() as session:
        await create_user(session, email, PASSWORD, role)
    return await sign_in(client, email)


async def open_stream(
    client: TestClient[Any, Any], token: str, last_event_id: str | None = None
) -> Stream:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    response = await client.get(f"/api/events?token={token}", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    stream = Stream(response)
    ready = await stream.next()
    assert ready.event == "ready"
    return stream


@pytest.fixture
async def hub(make_client: MakeClient) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await make_client(channels={"tg": config()})
    return client


@pytest.fixture
async def streams() -> AsyncIterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        await stream.close()


async def test_a_telegram_message_arrives_live_with_its_conversation_and_lead(
    hub: TestClient[Any, Any], db: Database, streams: list[Stream]
) -> None:
    token = await login(hub, db, "op@example.com", "operator")
    stream = await open_stream(hub, token)
    streams.append(stream)
    await telegram(hub, payload("text"))

    created = await stream.until("message.created")
    assert created.data["text"] == "Salom! Do you deliver to Tashkent?"
    assert created.data["direction"] == "in" and created.data["channel_type"] == "telegram"
    assert created.id and created.id.count("-") == 1
    conversation = await stream.until("conversation.updated")
    assert conversation.data["id"] == created.data["conversation_id"]
    lead = await stream.until("lead.created")
    assert lead.data["contact_id"] == created.data["contact_id"]


async def test_the_token_may_come_as_a_query_parameter_only_for_the_event_stream(
    hub: TestClient[Any, Any], db: Database
) -> None:
    token = await login(hub, db, "op@example.com", "operator")
    missing = await hub.get("/api/events")
    assert missing.status == 401 and "bearer token" in (await missing.json())["error"]
    wrong = await hub.get("/api/events?token=not-a-token")
    assert wrong.status == 401
    assert (await wrong.json())["error"] == "invalid, expired or revoked token"
    elsewhere = await hub.get(f"/api/contacts?token={token}")
    assert elsewhere.status == 401  # other endpoints take the header only
    header = await hub.get("/api/events", headers=auth(token))
    assert header.status == 200
    header.close()


async def test_a_reconnect_with_last_event_id_replays_exactly_what_was_missed(
    hub: TestClient[Any, Any], db: Database, streams: list[Stream]
) -> None:
    token = await login(hub, db, "op@example.com", "operator")
    stream = await open_stream(hub, token)
    await telegram(hub, update_from(111, 900001, "first"))
    seen = await stream.until("message.created", text="first")
    await stream.until("lead.created")
    await stream.close()

    # Offline: two more messages arrive.
    await telegram(hub, update_from(111, 900002, "second"))
    await telegram(hub, update_from(222, 900003, "third"))

    again = await open_stream(hub, token, last_event_id=seen.id)
    streams.append(again)
    texts = []
    while len(texts) < 2:
        sse = await again.next()
        assert sse.id is not None and sse.id > str(seen.id)
        if sse.event == "message.created":
            texts.append(sse.data["text"])
    assert texts == ["second", "third"]  # not "first": it was already seen

    # And it goes on live after the replay.
    await telegram(hub, update_from(222, 900004, "fourth"))
    await again.until("message.created", text="fourth")


async def test_a_malformed_last_event_id_is_a_400(hub: TestClient[Any, Any], db: Database) -> None:
    token = await login(hub, db, "op@example.com", "operator")
    for bad in ("yesterday", "1-2-3", "<script>", "9" * 30 + "-0"):
        response = await hub.get(f"/api/events?token={token}", headers={"Last-Event-ID": bad})
        assert response.status == 400, bad
        assert "Last-Event-ID" in (await response.json())["error"]


async def test_a_replay_from_before_the_trimmed_part_asks_the_browser_to_resync(
    hub: TestClient[Any, Any], db: Database, settings: Settings, streams: list[Stream]
) -> None:
    token = await login(hub, db, "op@example.com", "operator")
    await telegram(hub, update_from(111, 900001, "old"))
    await telegram(hub, update_from(111, 900002, "kept"))
    runtime = Runtime.open(settings)
    try:
        key = stream_key(settings.redis_prefix)
        first_id = (await runtime.redis.xrange(key, count=1))[0][0].decode()
        await runtime.redis.xtrim(key, maxlen=1, approximate=False)
    finally:
        await runtime.close()
    stream = await open_stream(hub, token, last_event_id=first_id)
    streams.append(stream)
    assert (await stream.next()).event == "resync"


async def test_operators_see_their_own_and_unassigned_conversations_managers_see_all(
    hub: TestClient[Any, Any], db: Database, streams: list[Stream]
) -> None:
    olga = await login(hub, db, "olga@example.com", "operator")
    pavel = await login(hub, db, "pavel@example.com", "operator")
    boss = await login(hub, db, "boss@example.com", "manager")
    await telegram(hub, update_from(111, 900001, "hello"))
    async with db.write() as session:
        pavel_id = await session.scalar(select(User.id).where(User.email == "pavel@example.com"))
        conversation_id = await session.scalar(select(Conversation.id))
        await session.execute(update(Conversation).values(assignee_id=pavel_id))

    olga_stream = await open_stream(hub, olga)
    pavel_stream = await open_stream(hub, pavel)
    boss_stream = await open_stream(hub, boss)
    streams.extend([olga_stream, pavel_stream, boss_stream])
    await telegram(hub, update_from(111, 900002, "for pavel"))
    await telegram(hub, update_from(333, 900003, "unassigned"))

    assert (await pavel_stream.until("message.created")).data["text"] == "for pavel"
    assert (await boss_stream.until("message.created")).data["text"] == "for pavel"
    # Olga's first message event is the unassigned one; of Pavel's conversation she learns
    # only that it is his (so her list drops it), not its contents.
    hidden = await olga_stream.next()
    assert hidden.event == "conversation.updated"
    assert hidden.data == {"id": conversation_id, "assignee_id": pavel_id, "status": "open"}
    assert (await olga_stream.until("message.created")).data["text"] == "unassigned"
    assert (await pavel_stream.until("message.created")).data["text"] == "unassigned"


async def test_two_web_processes_fan_out_through_redis(
    make_client: MakeClient, db: Database, streams: list[Stream]
) -> None:
    first = await make_client(channels={"tg": config()})
    second = await make_client(channels={"tg": config()})
    token = await login(first, db, "op@example.com", "operator")
    on_second = await open_stream(second, token)
    on_first = await open_stream(first, token)
    streams.extend([on_first, on_second])
    await telegram(first, payload("text"))
    one = await on_second.until("message.created")
    two = await on_first.until("message.created")
    assert one.id == two.id and one.data == two.data


@pytest.fixture
async def quick_hub(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The app with a ping every 0.1 s and the token re-checked every 0.2 s."""
    app = make_app(Runtime.open(replace(settings, channels={"tg": config()})))
    app[PING_SECONDS] = 0.1
    app[RECHECK_SECONDS] = 0.2
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def test_an_idle_stream_gets_keep_alive_pings(
    quick_hub: TestClient[Any, Any], db: Database, streams: list[Stream]
) -> None:
    token = await login(quick_hub, db, "op@example.com", "operator")
    stream = await open_stream(quick_hub, token)
    streams.append(stream)
    async with asyncio.timeout(WAIT):
        while not stream.comments:
            line = await stream.response.content.readline()
            if line.startswith(b":"):
                stream.comments.append(line.decode())
    assert stream.comments[0].startswith(": ping")


async def test_a_revoked_token_ends_its_open_stream(
    quick_hub: TestClient[Any, Any], db: Database, streams: list[Stream]
) -> None:
    token = await login(quick_hub, db, "op@example.com", "operator")
    stream = await open_stream(quick_hub, token)
    streams.append(stream)
    response = await quick_hub.post("/api/auth/logout", headers=auth(token))
    assert response.status == 200
    assert (await stream.until("logout")).data == {}
    with pytest.raises(EOFError):
        await stream.next()
    refused = await quick_hub.get(f"/api/events?token={token}")
    assert refused.status == 401


async def test_without_redis_the_stream_is_a_503_naming_it_and_other_methods_a_405(
    make_client: MakeClient, db: Database
) -> None:
    down = await make_client(redis_url="redis://127.0.0.1:1/0")
    async with db.write() as session:
        user = await create_user(session, "op@example.com", PASSWORD, "operator")
        token = await issue_token(session, user, "127.0.0.1")
    response = await down.get("/api/events", headers=auth(token))
    assert response.status == 503
    assert (await response.json())["error"] == "live events are unavailable: Redis does not answer"
    wrong = await down.post("/api/events", headers=auth(token))
    assert wrong.status == 405 and "error" in await wrong.json()


OLGA, PAVEL = User(id=1, role="operator"), User(id=2, role="operator")
BOSS = User(id=3, role="manager")


@pytest.mark.parametrize(
    ("kind", "audience", "olga", "pavel", "boss"),
    [
        ("message.created", None, "all", "all", "all"),  # unassigned: every operator
        ("message.created", 2, None, "all", "all"),  # Pavel's conversation
        ("conversation.updated", 2, "reduced", "all", "all"),  # Olga's list drops it
        ("lead.created", 1, "all", None, "all"),
        ("lead.updated", 2, None, "all", "all"),
        ("reminder.due", 1, "all", None, "all"),
        ("reminder.updated", 1, "all", None, "all"),
        (
            "call.ringing",
            "everyone",
            "all",
            "all",
            "all",
        ),  # a ringing phone is for whoever picks up
        ("something.new", "managers", None, None, "all"),  # unknown kinds: managers only
    ],
)
def test_who_receives_which_event(
    kind: str, audience: str | int | None, olga: str | None, pavel: str | None, boss: str | None
) -> None:
    data = {"id": 9, "assignee_id": audience, "status": "open", "text": "secret"}
    event = Event("1-0", kind, data, audience)

    def seen(user: User) -> str | None:
        got = event.for_user(user)
        if got is None:
            return None
        return "all" if got == data else "reduced"

    assert (seen(OLGA), seen(PAVEL), seen(BOSS)) == (olga, pavel, boss)
    if olga == "reduced":
        assert event.for_user(OLGA) == {"id": 9, "assignee_id": 2, "status": "open"}
