"""Twilio webhooks through the real app: signed messages stored once, forgeries refused with 403
and nothing stored, one contact across SMS and WhatsApp, delivery reports that only move forward."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from hub.db import Database
from hub.inbox.live import stream_key
from hub.models import Contact, Conversation, InboundReceipt, Lead, TimelineItem
from hub.settings import Settings
from tests.channels.test_twilio import FORM, PUBLIC_URL, payload, sign, twilio_config
from tests.conftest import TEST_REDIS_URL, MakeClient, count
from tests.workers.test_deliver import queue_reply

Client = TestClient[Any, Any]
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def twilio_client(make_client: MakeClient) -> Client:
    client: Client = await make_client(channels={"sms": twilio_config()}, public_url=PUBLIC_URL)
    return client


async def post(
    client: Client,
    kind: str,
    params: dict[str, str],
    *,
    query: str = "",
    signature: str | None = None,
) -> tuple[int, str]:
    path = f"/webhooks/twilio/sms/{kind}" + (f"?{query}" if query else "")
    headers = {"Content-Type": FORM}
    if signature is None:
        signature = sign(PUBLIC_URL + path, params)
    if signature:
        headers["X-Twilio-Signature"] = signature
    response = await client.post(path, data=urlencode(params), headers=headers)
    return response.status, await response.text()


async def test_a_signed_sms_is_stored_once_however_often_twilio_delivers_it(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    for _ in range(3):
        status, body = await post(client, "sms", payload("sms"))
        assert (status, body) == (200, TWIML)
    assert await count(db, TimelineItem) == 1
    assert await count(db, InboundReceipt) == 1
    async with db.read() as session:
        item = (await session.scalars(select(TimelineItem))).one()
        lead = (await session.scalars(select(Lead))).one()
    assert (item.channel, item.channel_type, item.direction) == ("sms", "twilio", "in")
    assert item.external_id == "SM0f8ec3f5c4d44d9a8b3b7f1e6a2c9d10"
    assert item.text.startswith("Hi! Do you deliver to Oakland?")
    assert (lead.source, lead.channel, lead.dialled_number) == ("sms", "sms", "+15017122661")


async def test_unsigned_wrongly_signed_or_signed_for_another_url_is_403_and_stores_nothing(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    params = payload("sms")
    path = "/webhooks/twilio/sms/sms"
    attempts = {
        "unsigned": "",
        "wrong token": sign(PUBLIC_URL + path, params, token="f" * 32),
        "another URL": sign("https://attacker.example.net" + path, params),
        "the Host header's URL": sign(f"http://{client.host}:{client.port}{path}", params),
        "other parameters": sign(PUBLIC_URL + path, params | {"Body": "something else"}),
    }
    for what, signature in attempts.items():
        status, body = await post(client, "sms", params, signature=signature)
        assert status == 403, what
        assert "signature" in json.loads(body)["error"]
    assert await count(db, TimelineItem) == 0
    assert await count(db, InboundReceipt) == 0
    assert await count(db, Contact) == 0


async def test_without_public_url_the_url_twilio_called_is_the_host_one(
    make_client: MakeClient, db: Database
) -> None:
    client: Client = await make_client(channels={"sms": twilio_config()})
    path = "/webhooks/twilio/sms/sms"
    params = payload("sms")
    signature = sign(f"http://{client.host}:{client.port}{path}", params)
    response = await client.post(
        path,
        data=urlencode(params),
        headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
    )
    assert response.status == 200
    assert await count(db, TimelineItem) == 1


async def test_sms_and_whatsapp_from_one_number_are_one_contact_in_two_conversations(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    assert (await post(client, "sms", payload("sms")))[0] == 200
    assert (await post(client, "sms", payload("whatsapp")))[0] == 200
    assert (await post(client, "sms", payload("whatsapp_location")))[0] == 200
    async with db.read() as session:
        contact = (await session.scalars(select(Contact))).one()
        conversations = (
            await session.scalars(select(Conversation).order_by(Conversation.id))
        ).all()
        items = (await session.scalars(select(TimelineItem).order_by(TimelineItem.id))).all()
        lead = (await session.scalars(select(Lead))).one()
    assert contact.name == "Dilnoza"  # WhatsApp's profile name
    assert [c.thread_key for c in conversations] == ["+14155552671", "whatsapp:+14155552671"]
    assert {c.contact_id for c in conversations} == {contact.id}
    assert [i.conversation_id for i in items] == [conversations[0].id] + [conversations[1].id] * 2
    assert items[2].meta["location"]["label"] == "Our shop"
    assert lead.source == "sms"  # the first interest opened it; WhatsApp joined it


async def test_mms_attachments_are_kept_with_their_source_urls(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    assert (await post(client, "sms", payload("mms")))[0] == 200
    async with db.read() as session:
        item = (await session.scalars(select(TimelineItem))).one()
    assert [(a["name"], a["content_type"]) for a in item.attachments] == [
        ("ME27c5b2d8a0e94f6c9e1b3d5f7a9c0e12.jpg", "image/jpeg"),
        ("ME3a1c5e7b9d0f24a6c8e0b2d4f6a8c0e3.pdf", "application/pdf"),
    ]
    assert all(
        a["source_url"].startswith("https://api.twilio.com/2010-04-01/Accounts/")
        for a in item.attachments
    )


async def outbound_item(
    client: Client, db: Database, fixture: str = "sms", sid: str | None = None
) -> int:
    """A reply in the conversation the fixture opened, as the deliver job leaves it."""
    assert (await post(client, "sms", payload(fixture)))[0] == 200
    async with db.read() as session:
        conversation_id = await session.scalar(
            select(Conversation.id).order_by(Conversation.id.desc())
        )
    assert conversation_id is not None
    item_id = await queue_reply(db, conversation_id, "sms", "Yes, we deliver to Oakland")
    async with db.write() as session:
        await session.execute(
            update(TimelineItem)
            .where(TimelineItem.id == item_id)
            .values(status="sent" if sid else "queued", external_id=sid)
        )
    return item_id


async def item(db: Database, item_id: int) -> TimelineItem:
    async with db.read() as session:
        return await session.get_one(TimelineItem, item_id)


async def live_updates(settings: Settings) -> list[dict[str, Any]]:
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        entries = await redis.xrange(stream_key(settings.redis_prefix))
    finally:
        await redis.aclose()
    events = [json.loads(fields[b"event"]) for _id, fields in entries]
    return [e["data"] for e in events if e["type"] == "message.updated"]


async def test_delivery_reports_move_the_item_forward_only_and_count_once(
    make_client: MakeClient, db: Database, settings: Settings
) -> None:
    client = await twilio_client(make_client)
    sid = "SM9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a"  # the status fixtures' MessageSid
    item_id = await outbound_item(client, db, sid=sid)
    receipts = await count(db, InboundReceipt)

    assert await post(client, "status", payload("status_delivered")) == (200, TWIML)
    assert await post(client, "status", payload("status_delivered")) == (200, TWIML)
    assert (await item(db, item_id)).status == "delivered"
    # Twilio's "sent" callback overtaken by "delivered": it must not move the item back.
    assert (await post(client, "status", payload("status_sent")))[0] == 200
    assert (await post(client, "status", payload("status_undelivered")))[0] == 200
    stored = await item(db, item_id)
    assert (stored.status, stored.error) == ("delivered", None)
    assert stored.meta["provider_status"] == "delivered"
    assert await count(db, InboundReceipt) == receipts + 3  # delivered, sent, undelivered
    assert await count(db, TimelineItem) == 2  # reports add no items

    updates = await live_updates(settings)
    assert [(u["id"], u["status"]) for u in updates] == [(item_id, "delivered")]


async def test_reports_arriving_at_once_leave_the_furthest_status(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    item_id = await outbound_item(client, db, sid="SM9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a")
    reports = [payload(name) for name in ("status_sent", "status_delivered", "status_sent")]
    results = await asyncio.gather(*(post(client, "status", r) for r in reports * 3))
    assert {status for status, _ in results} == {200}
    assert (await item(db, item_id)).status == "delivered"


async def test_an_undelivered_sms_shows_the_reason_in_words(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    item_id = await outbound_item(client, db, sid="SM9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a")
    assert (await post(client, "status", payload("status_undelivered")))[0] == 200
    stored = await item(db, item_id)
    assert stored.status == "failed"
    assert stored.error is not None and "unreachable" in stored.error and "30003" in stored.error
    assert (stored.meta["provider_status"], stored.meta["error_code"]) == ("undelivered", "30003")


async def test_whatsapp_outside_the_24_hour_window_fails_with_its_explanation(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    sid = "SMe7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b7"
    item_id = await outbound_item(client, db, "whatsapp", sid=sid)
    assert (await post(client, "status", payload("status_whatsapp_failed_63016")))[0] == 200
    stored = await item(db, item_id)
    assert stored.status == "failed"
    assert stored.error is not None
    assert "outside WhatsApp's 24-hour window" in stored.error and "template" in stored.error
    # "read" outranks the failure if the two ever arrive crossed.
    assert (await post(client, "status", payload("status_whatsapp_read")))[0] == 200
    stored = await item(db, item_id)
    assert (stored.status, stored.error) == ("read", None)


async def test_a_report_before_the_send_result_finds_the_item_by_the_id_in_its_url(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    item_id = await outbound_item(client, db)  # still queued: no Twilio sid stored yet
    query = f"item={item_id}"
    assert (await post(client, "status", payload("status_sent"), query=query))[0] == 200
    stored = await item(db, item_id)
    assert (stored.status, stored.external_id) == ("sent", "SM9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a")
    # Another message's report naming this item (a retried send) leaves it alone.
    other = payload("status_delivered", MessageSid="SM" + "0" * 32, SmsSid="SM" + "0" * 32)
    assert (await post(client, "status", other, query=query))[0] == 200
    assert (await item(db, item_id)).status == "sent"


async def test_a_report_for_a_message_the_hub_did_not_send_is_accepted_and_ignored(
    make_client: MakeClient, db: Database
) -> None:
    client = await twilio_client(make_client)
    assert await post(client, "status", payload("status_delivered")) == (200, TWIML)
    assert await count(db, TimelineItem) == 0
    status, _ = await post(client, "status", payload("status_delivered"), signature="bad")
    assert status == 403
