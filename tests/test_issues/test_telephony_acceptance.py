"""Issue 7's acceptance, end to end over HTTP: signed PBX and Twilio Voice webhooks in, the
caller card out of the API and the live stream, the callback reminder fired by the real worker."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from sqlalchemy import select

from hub.db import Database
from hub.inbox.live import stream_key
from hub.models import Contact, InboundReceipt, Lead, Reminder, TimelineItem, utcnow
from hub.settings import Settings
from tests.channels.test_pbx import call_item, pbx_config, pbx_event, post_pbx, signature
from tests.channels.test_twilio import FORM, PUBLIC_URL, sign, twilio_config
from tests.channels.test_twilio_voice import OPERATORS, voice_payload
from tests.conftest import TEST_REDIS_URL, MakeClient, auth, count
from tests.workers.test_deliver import run_worker
from webhooks.context import RUNTIME

Client = Any
UNKNOWN = "+998901234567"
AD_LINE = "+998712000001"


async def telephony_client(make_client: MakeClient) -> Client:
    channels = {"office": pbx_config(), "sms": twilio_config(voice_operators=OPERATORS)}
    return await make_client(channels=channels, public_url=PUBLIC_URL)


async def live_events(settings: Settings, kind: str) -> list[dict[str, Any]]:
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        entries = await redis.xrange(stream_key(settings.redis_prefix))
    finally:
        await redis.aclose()
    events = [json.loads(fields[b"event"]) for _id, fields in entries]
    return [e["data"] for e in events if e["type"] == kind]


async def lookup(client: Client, token: str, phone: str) -> dict[str, Any]:
    response = await client.get("/api/calls/lookup", params={"phone": phone}, headers=auth(token))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_an_unanswered_call_from_an_unknown_number_becomes_a_lead_to_call_back_at_once(
    make_client: MakeClient, db: Database, settings: Settings, token: str
) -> None:
    client = await telephony_client(make_client)
    for name in ("ringing", "missed"):
        response = await post_pbx(client, pbx_event(name))
        assert response.status == 200, await response.text()
    assert await count(db, Contact) == 1
    async with db.read() as session:
        lead = (await session.scalars(select(Lead))).one()
        reminder = (await session.scalars(select(Reminder))).one()
    assert (lead.source, lead.dialled_number, lead.channel) == ("call", AD_LINE, "office")
    assert (reminder.status, reminder.kind, reminder.lead_id) == ("pending", "missed_call", lead.id)
    assert reminder.due_at <= utcnow()  # due at once
    item = await call_item(db, "1764064800.1042")
    assert (item.kind, item.direction, item.status) == ("call", "in", "missed")
    assert item.text == "Missed call (no answer)"

    # The phone rang: the inbox got the caller card, the same card the lookup answers.
    (ringing,) = await live_events(settings, "call.ringing")
    assert ringing["call"]["external_id"] == "1764064800.1042"
    assert ringing["card"]["phone"] == UNKNOWN and ringing["card"]["known"] is True

    # The callback reminder is due now: the real worker fires it at once.
    await run_worker(client.app[RUNTIME])
    async with db.read() as session:
        fired = (await session.scalars(select(Reminder))).one()
    assert fired.status == "notified"
    assert [r["id"] for r in await live_events(settings, "reminder.due")] == [reminder.id]


async def test_the_same_person_answered_shows_duration_and_recording_and_the_reminder_is_done(
    make_client: MakeClient, db: Database, token: str
) -> None:
    client = await telephony_client(make_client)
    for name in ("ringing", "missed"):
        await post_pbx(client, pbx_event(name))
    # The next call arrives with the number as the PBX writes it, its end before its answer.
    for name in ("ended", "answered", "ended"):
        response = await post_pbx(client, pbx_event(name))
        assert response.status == 200, await response.text()
    item = await call_item(db, "1764068400.1077")
    assert (item.status, item.meta["duration"]) == ("ended", 95)
    assert item.meta["recording_url"].startswith("https://pbx.example.com/monitor/")
    assert item.meta["comments"][0]["text"] == "asked for a quote, send by e-mail"
    assert await count(db, Contact) == 1 and await count(db, Lead) == 1
    async with db.read() as session:
        reminder = (await session.scalars(select(Reminder))).one()
    assert reminder.status == "done"
    # The API shows the call with them.
    response = await client.get(f"/api/contacts/{item.contact_id}/timeline", headers=auth(token))
    calls = [i for i in (await response.json())["items"] if i["kind"] == "call"]
    assert [(c["status"], c["meta"]["duration"]) for c in calls] == [
        ("missed", None),
        ("ended", 95),
    ]


async def test_twilio_ringing_then_no_answer_then_answered_later(
    make_client: MakeClient, db: Database
) -> None:
    """The same story on Twilio Voice: Dial no-answer, then a later call an operator takes."""
    client = await telephony_client(make_client)

    async def post(kind: str, name: str, **overrides: str) -> None:
        path = f"/webhooks/twilio/sms/{kind}"
        params = voice_payload(name, From=UNKNOWN, Caller=UNKNOWN, **overrides)
        headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(PUBLIC_URL + path, params)}
        response = await client.post(path, data=urlencode(params), headers=headers)
        assert response.status == 200, await response.text()

    await post("voice", "incoming")
    await post("voice", "dial_no_answer")
    await post("voice/status", "status_completed")
    async with db.read() as session:
        lead = (await session.scalars(select(Lead))).one()
        reminder = (await session.scalars(select(Reminder))).one()
    assert (lead.source, lead.dialled_number) == ("call", "+15017122661")
    assert reminder.status == "pending" and reminder.due_at <= utcnow()
    later = "CA11111111111111111111111111111111"
    await post("voice", "incoming", CallSid=later)
    await post("voice", "dial_completed", CallSid=later)
    await post("voice/status", "status_completed", CallSid=later)
    item = await call_item(db, later)
    assert (item.status, item.meta["duration"]) == ("ended", 125)
    async with db.read() as session:
        assert (await session.scalars(select(Reminder))).one().status == "done"
    assert await count(db, Contact) == 1 and await count(db, Lead) == 1


async def test_lookup_in_any_phone_format_returns_the_same_card(
    make_client: MakeClient, db: Database, settings: Settings, token: str
) -> None:
    client = await telephony_client(make_client)
    for name in ("ringing", "missed"):
        await post_pbx(client, pbx_event(name))
    cards = [
        await lookup(client, token, phone)
        for phone in ("0901234567", "+998901234567", "998 90 123-45-67")
    ]
    assert cards[0] == cards[1] == cards[2]
    card = cards[0]
    assert card["phone"] == UNKNOWN and card["known"] is True
    assert card["contact"]["phones"] == [UNKNOWN]
    assert [(lead["source"], lead["dialled_number"]) for lead in card["open_leads"]] == [
        ("call", AD_LINE)
    ]
    assert [i["status"] for i in card["last_items"] if i["kind"] == "call"] == ["missed"]
    assert [r["status"] for r in card["open_reminders"]] == ["pending"]
    # call.ringing carried this card (before the miss, so the call item still rang then).
    (ringing,) = await live_events(settings, "call.ringing")
    assert ringing["card"]["contact"] == card["contact"]
    assert ringing["card"]["open_leads"] == card["open_leads"]

    unknown = await lookup(client, token, "+998 93 000 00 00")
    assert (unknown["known"], unknown["contact"], unknown["open_leads"]) == (False, None, [])
    for bad, field in (("", "phone"), ("call me", "phone")):
        response = await client.get("/api/calls/lookup", params={"phone": bad}, headers=auth(token))
        assert response.status == 400 and (await response.json())["field"] == field
    response = await client.get("/api/calls/lookup", params={"phone": UNKNOWN})
    assert response.status == 401


async def test_a_pbx_event_with_a_bad_signature_is_401_and_stores_no_row(
    make_client: MakeClient, db: Database
) -> None:
    client = await telephony_client(make_client)
    body = json.dumps(pbx_event("ringing")).encode()
    for bad in ("", "sha256=" + "0" * 64, signature(body, "not the channel's secret at all")):
        response = await post_pbx(client, body, bad)
        assert response.status == 401
    for model in (TimelineItem, Contact, Lead, Reminder, InboundReceipt):
        assert await count(db, model) == 0


async def test_operators_comment_on_a_call(
    make_client: MakeClient, db: Database, token: str
) -> None:
    client = await telephony_client(make_client)
    await post_pbx(client, pbx_event("ringing"))
    item = await call_item(db, "1764064800.1042")
    response = await client.post(
        f"/api/calls/{item.id}/comments",
        json={"text": "wants a callback after 6pm"},
        headers=auth(token),
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["meta"]["comments"][0]["text"] == "wants a callback after 6pm"
    for target, body, status in (
        (item.id, {"text": "  "}, 400),
        (item.id, {"text": 5}, 400),
        (item.id + 1000, {"text": "x"}, 404),
    ):
        response = await client.post(
            f"/api/calls/{target}/comments", json=body, headers=auth(token)
        )
        assert response.status == status
    assert len((await call_item(db, "1764064800.1042")).meta["comments"]) == 1
