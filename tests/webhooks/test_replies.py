"""Replies and notes through the API: queued, delivered by the real worker, never lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import Lead, TimelineItem, utcnow
from hub.settings import ChannelConfig
from tests.conftest import auth, count
from tests.workers.test_deliver import RecordingChannel, run_worker
from webhooks.context import RUNTIME
from workers.jobs import RUNTIME as JOB_RUNTIME
from workers.jobs import requeue_stale_replies

Client = TestClient[Any, Any]


async def sms_conversation(db: Database) -> Any:
    return await ingest(
        db,
        InboundEvent(
            channel="sms",
            channel_type="twilio",
            external_id="SM1",
            source="sms",
            sender=Sender(phones=("+998901234567",)),
            text="Salom",
        ),
        "UZ",
    )


@pytest.fixture
def recorder(client: Client) -> RecordingChannel:
    runtime = client.server.app[RUNTIME]
    channel = RecordingChannel(ChannelConfig("sms", "recording", {}), runtime.settings)
    runtime.channels["sms"] = channel
    RecordingChannel.sent.clear()
    RecordingChannel.outcomes.clear()
    return channel


async def test_reply_is_queued_then_sent_by_the_worker(
    client: Client,
    db: Database,
    token: str,
    recorder: RecordingChannel,
) -> None:
    seeded = await sms_conversation(db)
    response = await client.post(
        f"/api/conversations/{seeded.conversation_id}/messages",
        json={"text": "  We will call you in 10 minutes  "},
        headers=auth(token),
    )
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["status"] == "queued"
    async with db.read() as session:
        lead = await session.get_one(Lead, seeded.lead_id)
    assert lead.first_response_at is not None
    await run_worker(client.server.app[RUNTIME])
    async with db.read() as session:
        item = await session.get_one(TimelineItem, body["id"])
    assert (item.status, item.direction, item.text) == (
        "sent",
        "out",
        "We will call you in 10 minutes",
    )
    assert [m.to for m in RecordingChannel.sent] == ["+998901234567"]
    timeline = await (
        await client.get(
            f"/api/conversations/{seeded.conversation_id}/messages", headers=auth(token)
        )
    ).json()
    assert [i["direction"] for i in timeline["items"]] == ["in", "out"]


async def test_bad_replies_are_refused_and_store_nothing(
    client: Client,
    db: Database,
    token: str,
    recorder: RecordingChannel,
) -> None:
    seeded = await sms_conversation(db)
    path = f"/api/conversations/{seeded.conversation_id}/messages"
    cases: list[tuple[str, Any, int]] = [
        (path, {"text": ""}, 400),
        (path, {"text": 5}, 400),
        (path, {"text": "x" * 20001}, 400),
        (path, {"text": "hi", "attachments": [{"name": "a.png"}]}, 400),
        ("/api/conversations/999/messages", {"text": "hi"}, 404),
    ]
    for url, payload, status in cases:
        response = await client.post(url, json=payload, headers=auth(token))
        assert response.status == status, (payload, await response.text())
    form = await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:f1",
            kind="form",
            source="form",
            sender=Sender(phones=("+998901112233",)),
        ),
        "UZ",
    )
    refused = await client.post(
        f"/api/conversations/{form.conversation_id}/messages",
        json={"text": "hi"},
        headers=auth(token),
    )
    assert refused.status == 400
    assert "cannot send replies" in (await refused.json())["error"]
    assert await count(db, TimelineItem, TimelineItem.direction == "out") == 0


async def test_a_note_stays_internal(client: Client, db: Database, token: str) -> None:
    seeded = await sms_conversation(db)
    response = await client.post(
        f"/api/conversations/{seeded.conversation_id}/notes",
        json={"text": "VIP: call before noon"},
        headers=auth(token),
    )
    assert response.status == 201
    note = await response.json()
    assert (note["direction"], note["kind"]) == ("internal", "note")
    assert note["author_id"] is not None


async def test_a_reply_whose_job_was_lost_is_sent_by_the_sweep(
    client: Client,
    db: Database,
    token: str,
    recorder: RecordingChannel,
) -> None:
    seeded = await sms_conversation(db)
    response = await client.post(
        f"/api/conversations/{seeded.conversation_id}/messages",
        json={"text": "hello"},
        headers=auth(token),
    )
    item_id = (await response.json())["id"]
    runtime = client.server.app[RUNTIME]
    prefix = runtime.settings.redis_prefix
    lost = [k async for k in runtime.redis.scan_iter(match=f"*{prefix}*")]
    await runtime.redis.delete(*lost)  # the Redis side is gone: queue and job
    async with db.write() as session:
        await session.execute(
            update(TimelineItem)
            .where(TimelineItem.id == item_id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
    assert await requeue_stale_replies({JOB_RUNTIME: runtime}) == 1
    await run_worker(runtime)
    async with db.read() as session:
        item = await session.get_one(TimelineItem, item_id)
    assert item.status == "sent"
    assert await requeue_stale_replies({JOB_RUNTIME: runtime}) == 0
