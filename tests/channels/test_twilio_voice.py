"""Twilio Voice: real voice webhook payloads parsed into call events, the TwiML that rings the
operators and falls back to voicemail, and (through the real app) signed calls stored once,
forgeries refused, and outbound calls that close the callback reminder."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.channels.base import InvalidPayload
from hub.channels.twilio import Twilio
from hub.db import Database
from hub.inbox.calls import call_event_of
from hub.inbox.ingest import ingest
from hub.models import Contact, InboundReceipt, Lead, Reminder, TimelineItem
from hub.settings import ConfigError, Settings, load_settings
from tests.channels.test_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FIXTURES,
    FORM,
    PUBLIC_URL,
    sign,
    twilio_config,
    twilio_request,
)
from tests.conftest import MakeClient, auth, count
from tests.workers.test_fetch_attachments import run_jobs

Client = TestClient[Any, Any]
CALL = "CA7d1f7c4f0b2e4e8c9a6b5d4c3b2a1f09"
OUT_CALL = "CA3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e"
OPERATORS = ["+998901112233", "+998901112244"]


def voice_payload(name: str, **overrides: str) -> dict[str, str]:
    text = (FIXTURES / "voice" / f"{name}.txt").read_text(encoding="utf-8").strip()
    return dict(parse_qsl(text, keep_blank_values=True)) | overrides


def voice_channel(**values: Any) -> Twilio:
    settings = Settings(public_url=PUBLIC_URL, default_region="UZ")
    return Twilio(twilio_config(voice_operators=OPERATORS, voice_timeout=25, **values), settings)


def twiml(body: bytes | str) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == "Response"
    return root


# --- parsing and TwiML ------------------------------------------------------------------------


def test_an_incoming_call_rings_every_operator_with_the_timeout() -> None:
    twilio = voice_channel()
    events = twilio.parse(twilio_request("voice", voice_payload("incoming")))
    (event,) = events
    call = call_event_of(event)
    assert call is not None
    assert (call.event, call.call_id, call.direction) == ("ringing", CALL, "in")
    assert (call.party, call.line) == ("+14155552671", "+15017122661")
    assert event.external_id == f"{CALL}:ringing" and event.source == "call"
    assert event.thread_key == "+14155552671"  # the same conversation as their SMS
    answer = twilio.ack(events)
    assert (answer.status, answer.content_type) == (200, "text/xml")
    (dial,) = twiml(answer.body)
    assert dial.tag == "Dial"
    assert dial.get("timeout") == "25" and dial.get("answerOnBridge") == "true"
    assert dial.get("action") == f"{PUBLIC_URL}/webhooks/twilio/sms/voice"
    assert [n.text for n in dial.findall("Number")] == OPERATORS


def test_nobody_answering_plays_the_message_and_records_a_voicemail() -> None:
    twilio = voice_channel(voice_message="We are closed.", voice_max_message_seconds=60)
    events = twilio.parse(twilio_request("voice", voice_payload("dial_no_answer")))
    call = call_event_of(events[0])
    assert call is not None and (call.event, call.reason, call.step) == (
        "missed",
        "no-answer",
        "dial",
    )
    say, record, hangup = twiml(twilio.ack(events).body)
    assert (say.tag, say.text) == ("Say", "We are closed.")
    assert record.tag == "Record" and record.get("maxLength") == "60"
    recording_url = f"{PUBLIC_URL}/webhooks/twilio/sms/voice/recording"
    assert record.get("action") == recording_url
    assert record.get("recordingStatusCallback") == recording_url
    assert hangup.tag == "Hangup"


def test_without_operators_an_incoming_call_goes_straight_to_voicemail() -> None:
    settings = Settings(public_url=PUBLIC_URL, default_region="UZ")
    twilio = Twilio(twilio_config(), settings)
    events = twilio.parse(twilio_request("voice", voice_payload("incoming")))
    calls = [call_event_of(e) for e in events]
    assert [(c.event, c.reason) for c in calls if c is not None] == [
        ("ringing", None),
        ("missed", "no-answer"),
    ]
    assert [e.tag for e in twiml(twilio.ack(events).body)] == ["Say", "Record", "Hangup"]


def test_an_answered_dial_hangs_up_and_callbacks_answer_empty_twiml() -> None:
    twilio = voice_channel()
    events = twilio.parse(twilio_request("voice", voice_payload("dial_completed")))
    call = call_event_of(events[0])
    assert call is not None and (call.event, call.duration, call.answered) == (
        "answered",
        125,
        True,
    )
    assert [e.tag for e in twiml(twilio.ack(events).body)] == ["Hangup"]
    status = twilio.parse(twilio_request("voice/status", voice_payload("status_completed")))
    ended = call_event_of(status[0])
    assert ended is not None and (ended.event, ended.duration) == ("ended", 151)
    assert not ended.answered  # an inbound call "completes" after a voicemail too
    assert list(twiml(twilio.ack(status).body)) == []


def test_recording_action_and_callback_are_one_recording() -> None:
    twilio = voice_channel()
    action = twilio.parse(twilio_request("voice/recording", voice_payload("record_action")))
    callback = twilio.parse(twilio_request("voice/recording", voice_payload("recording")))
    assert action[0].external_id == callback[0].external_id  # stored once
    call = call_event_of(callback[0])
    assert call is not None and call.recording_duration == 14 and call.voicemail
    assert call.recording_url == (
        "https://api.twilio.com/2010-04-01/Accounts/ACae3c3c9a1d6a4c0b8f9e2d7c5b4a3f21"
        "/Recordings/RE4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c"
    )
    assert [e.tag for e in twiml(twilio.ack(action).body)] == ["Hangup"]
    absent = voice_payload("recording", RecordingStatus="absent", RecordingUrl="")
    assert twilio.parse(twilio_request("voice/recording", absent)) == []


def test_outbound_calls_and_operator_legs() -> None:
    twilio = voice_channel()
    (event,) = twilio.parse(twilio_request("voice/status", voice_payload("outbound_completed")))
    call = call_event_of(event)
    assert call is not None
    assert (call.direction, call.party, call.event, call.answered) == (
        "out",
        "+14155552671",
        "ended",
        True,
    )
    assert not event.opens_lead
    (missed,) = twilio.parse(twilio_request("voice/status", voice_payload("outbound_no_answer")))
    assert call_event_of(missed) is not None
    assert twilio.parse(twilio_request("voice/status", voice_payload("operator_leg"))) == []


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("voice", {"CallSid": ""}, "CallSid"),
        ("voice", {"CallSid": "SM0f8ec3f5c4d44d9a8b3b7f1e6a2c9d10"}, "CallSid"),
        ("voice", {"DialCallDuration": "soon", "DialCallStatus": "completed"}, "DialCallDuration"),
        ("voice/status", {"CallStatus": ""}, "CallStatus"),
        ("voice/status", {"CallStatus": "exploded"}, "CallStatus"),
        ("voice/status", {"CallDuration": "-3"}, "CallDuration"),
        ("voice/recording", {"RecordingUrl": "javascript:alert(1)"}, "RecordingUrl"),
    ],
)
def test_malformed_voice_webhooks_are_invalid_payloads(
    kind: str, params: dict[str, str], field: str
) -> None:
    base = {"voice": "incoming", "voice/status": "status_completed", "voice/recording": "recording"}
    with pytest.raises(InvalidPayload) as info:
        voice_channel().parse(twilio_request(kind, voice_payload(base[kind], **params)))
    assert info.value.field == field


def test_voice_keys_are_checked(tmp_path: Any) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        "[channels.sms]\n"
        'type = "twilio"\n'
        'account_sid = "ACae3c3c9a1d6a4c0b8f9e2d7c5b4a3f21"\n'
        'auth_token = "x"\n'
        'from_number = "+15017122661"\n'
        'voice_operators = ["+998901112233", "90 111 22 33"]\n'
        "voice_timeout = 1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert any("voice_operators: '90 111 22 33' is not an E.164" in p for p in info.value.problems)
    assert any("voice_timeout: 1 is not 5 to 600 seconds" in p for p in info.value.problems)


# --- through the real app ---------------------------------------------------------------------


async def voice_client(make_client: MakeClient) -> Client:
    config = twilio_config(voice_operators=OPERATORS)
    client: Client = await make_client(channels={"sms": config}, public_url=PUBLIC_URL)
    return client


async def post_voice(
    client: Client, kind: str, params: dict[str, str], signature: str | None = None
) -> tuple[int, str]:
    path = f"/webhooks/twilio/sms/{kind}"
    headers = {"Content-Type": FORM}
    signature = sign(PUBLIC_URL + path, params) if signature is None else signature
    if signature:
        headers["X-Twilio-Signature"] = signature
    response = await client.post(path, data=urlencode(params), headers=headers)
    return response.status, await response.text()


async def test_unsigned_or_forged_voice_webhooks_are_403_and_store_nothing(
    make_client: MakeClient, db: Database
) -> None:
    client = await voice_client(make_client)
    params = voice_payload("incoming")
    path = "/webhooks/twilio/sms/voice"
    for kind, signature in (
        ("voice", ""),
        ("voice", sign(PUBLIC_URL + path, params, token="f" * 32)),
        ("voice", sign(PUBLIC_URL + path + "/status", params)),  # signed for another URL
        ("voice/status", sign(PUBLIC_URL + path, voice_payload("status_completed"))),
    ):
        status, _ = await post_voice(client, kind, params, signature)
        assert status == 403
    for model in (TimelineItem, Contact, Lead, InboundReceipt):
        assert await count(db, model) == 0


async def test_a_missed_twilio_call_with_voicemail_is_one_item_however_often_delivered(
    make_client: MakeClient, db: Database
) -> None:
    client = await voice_client(make_client)
    steps = [
        ("voice", "incoming"),
        ("voice", "dial_no_answer"),
        ("voice/recording", "record_action"),
        ("voice/recording", "recording"),
        ("voice/status", "status_completed"),
    ]
    for kind, name in steps + steps[::-1]:  # each twice, the second time in reverse
        status, body = await post_voice(client, kind, voice_payload(name))
        assert status == 200, body
    assert await count(db, TimelineItem) == 1
    item = (await _items(db))[0]
    assert (item.kind, item.status, item.external_id) == ("call", "missed", CALL)
    assert item.meta["voicemail"] is True and item.meta["recording_duration"] == 14
    assert item.meta["missed_reason"] == "no-answer" and item.meta["call_duration"] == 151
    assert item.text == "Missed call (no answer), voicemail 0:14"
    async with db.read() as session:
        lead = (await session.scalars(select(Lead))).one()
        reminder = (await session.scalars(select(Reminder))).one()
    assert (lead.source, lead.channel, lead.dialled_number) == ("call", "sms", "+15017122661")
    assert (reminder.status, reminder.kind) == ("pending", "missed_call")


async def test_an_outbound_call_back_closes_the_open_callback_reminder(
    make_client: MakeClient, db: Database
) -> None:
    client = await voice_client(make_client)
    await post_voice(client, "voice", voice_payload("incoming"))
    await post_voice(client, "voice", voice_payload("dial_no_answer"))
    assert await count(db, Reminder, Reminder.status == "pending") == 1
    # Calling back and getting no answer leaves the reminder open; an answered call closes it.
    assert (await post_voice(client, "voice/status", voice_payload("outbound_no_answer")))[0] == 200
    assert await count(db, Reminder, Reminder.status == "pending") == 1
    assert (await post_voice(client, "voice/status", voice_payload("outbound_completed")))[0] == 200
    assert await count(db, Reminder, Reminder.status == "done") == 1
    items = await _items(db)
    out = next(i for i in items if i.external_id == OUT_CALL)
    assert (out.direction, out.status, out.meta["duration"]) == ("out", "ended", 62)
    assert len({i.contact_id for i in items}) == 1  # both calls are one person
    assert await count(db, Lead) == 1


async def test_a_text_in_the_calls_conversation_does_not_reopen_a_lead_twice(db: Database) -> None:
    """The caller's SMS later joins the lead the call opened (one open lead per contact)."""
    from tests.channels.test_twilio import channel as sms_channel

    twilio = voice_channel()
    (ringing,) = twilio.parse(twilio_request("voice", voice_payload("incoming")))
    from hub.inbox.calls import apply_call

    await apply_call(db, ringing, "UZ", timedelta(minutes=15))
    sms = sms_channel().parse(twilio_request("sms", _sms()))[0]
    await ingest(db, sms, "UZ", timedelta(minutes=15))
    assert await count(db, Lead) == 1 and await count(db, Contact) == 1
    async with db.read() as session:
        conversations = {i.conversation_id for i in await session.scalars(select(TimelineItem))}
    assert len(conversations) == 1  # the call and the SMS share the number's thread


def _sms() -> dict[str, str]:
    from tests.channels.test_twilio import payload

    return payload("sms")


async def _items(db: Database) -> list[TimelineItem]:
    async with db.read() as session:
        return list(await session.scalars(select(TimelineItem).order_by(TimelineItem.id)))


async def test_the_voicemail_is_fetched_with_the_account_credentials_and_served_to_operators(
    make_client: MakeClient, settings: Settings, db: Database, token: str
) -> None:
    """Twilio's recording URL (as .mp3, behind basic auth) fetched by the real worker."""
    audio = b"ID3\x03\x00 a voicemail"
    seen: list[str] = []

    async def recording(request: web.Request) -> web.Response:
        seen.append(request.match_info["file"])
        expected = aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        return web.Response(body=audio, content_type="audio/mpeg")

    app = web.Application()
    app.router.add_get("/2010-04-01/Accounts/{sid}/Recordings/{file}", recording)
    server = TestServer(app)
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        channels = {"sms": twilio_config(voice_operators=OPERATORS, api_base=base)}
        client: Client = await make_client(channels=channels, public_url=PUBLIC_URL)
        for kind, name in (("voice", "incoming"), ("voice", "dial_no_answer")):
            assert (await post_voice(client, kind, voice_payload(name)))[0] == 200
        params = voice_payload("recording")
        params["RecordingUrl"] = params["RecordingUrl"].replace("https://api.twilio.com", base)
        assert (await post_voice(client, "voice/recording", params))[0] == 200
        await run_jobs(settings, db, channels=channels, public_url=PUBLIC_URL)
    finally:
        await server.close()
    assert seen == ["RE4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c.mp3"]
    (item,) = await _items(db)
    (kept,) = item.attachments
    assert kept["stored"] is True and kept["content_type"] == "audio/mpeg"
    assert kept["sha256"] == hashlib.sha256(audio).hexdigest()
    response = await client.get(kept["url"], headers=auth(token))
    assert response.status == 200 and await response.read() == audio
