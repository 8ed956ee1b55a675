"""Replies through Twilio: the official client against a local fake of the Messages API, driven
by the real deliver job on a real arq worker; then Twilio's status callback through the real app."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import MultiDictProxy

from hub.channels.base import SendResult
from hub.channels.registry import build_channels
from hub.channels.twilio.rest import Account, create_message
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import TimelineItem
from hub.runtime import Runtime
from hub.settings import Settings
from tests.channels.test_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FORM,
    PUBLIC_URL,
    channel,
    payload,
    sign,
    twilio_config,
    twilio_request,
)
from tests.conftest import MakeClient
from tests.workers.test_deliver import queue_reply, run_worker

OPTED_OUT = "+14155550100"
SLOW_TO_ANSWER = "+14155550101"
RATE_LIMITED = "+14155550102"


@dataclass
class FakeTwilio:
    """Speaks the Messages resource of Twilio's REST API: 201 with the message, or Twilio's
    error JSON. Records every POST, form parameters repeated keys included."""

    url: str = ""
    posts: list[MultiDictProxy[str]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)

    async def create(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        form = await request.post()
        self.posts.append(form)  # type: ignore[arg-type]  # no files in a Messages POST
        self.auth.append(request.headers.get("Authorization", ""))
        to = str(form["To"])
        self.answered[to] = self.answered.get(to, 0) + 1
        if to.removeprefix("whatsapp:") == OPTED_OUT:
            return web.json_response(
                {
                    "code": 21610,
                    "message": "Attempt to send to unsubscribed recipient",
                    "more_info": "https://www.twilio.com/docs/errors/21610",
                    "status": 400,
                },
                status=400,
            )
        if to == SLOW_TO_ANSWER and self.answered[to] == 1:
            return web.json_response(
                {"code": 20500, "message": "Internal Server Error", "status": 500}, status=500
            )
        if to == RATE_LIMITED and self.answered[to] == 1:
            return web.json_response(
                {"code": 20429, "message": "Too Many Requests", "status": 429},
                status=429,
                headers={"Retry-After": "1"},
            )
        sid = f"SM{len(self.posts):032x}"
        now = format_datetime(datetime.now(UTC))
        return web.json_response(
            {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": form.get("Body", ""),
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form["From"],
                "messaging_service_sid": None,
                "num_media": str(len(form.getall("MediaUrl", []))),
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"
                },
                "to": to,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
            status=201,
        )


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    fake = FakeTwilio()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", fake.create)
    server = TestServer(app)
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


def twilio_settings(settings: Settings, fake: FakeTwilio) -> Settings:
    return replace(
        settings,
        public_url=PUBLIC_URL,
        channels={"sms": twilio_config(api_base=fake.url)},
    )


async def conversation_with(db: Database, fixture: str, **changes: str) -> int:
    """The conversation an inbound Twilio message opened (parsed from the fixture)."""
    (event,) = channel().parse(twilio_request("sms", payload(fixture, **changes)))
    result = await ingest(db, event, "UZ")
    assert result.conversation_id is not None
    return result.conversation_id


async def deliver(settings: Settings, *item_ids: int) -> None:
    runtime = Runtime.open(settings)
    try:
        for item_id in item_ids:
            await runtime.enqueue("deliver", item_id, job_id=f"deliver:{item_id}")
        await run_worker(runtime)
    finally:
        await runtime.close()


async def stored(db: Database, item_id: int) -> TimelineItem:
    async with db.read() as session:
        return await session.get_one(TimelineItem, item_id)


async def test_an_sms_reply_reaches_twilio_and_its_delivery_report_shows_on_the_item(
    settings: Settings, db: Database, fake_twilio: FakeTwilio, make_client: MakeClient
) -> None:
    settings = twilio_settings(settings, fake_twilio)
    conversation_id = await conversation_with(db, "sms")
    long_text = "We deliver to Oakland on Tuesdays and Fridays. " * 8  # several SMS segments
    item_id = await queue_reply(db, conversation_id, "sms", long_text)
    await deliver(settings, item_id)

    (post,) = fake_twilio.posts
    assert (post["From"], post["To"], post["Body"]) == ("+15017122661", "+14155552671", long_text)
    callback = f"{PUBLIC_URL}/webhooks/twilio/sms/status?item={item_id}"
    assert post["StatusCallback"] == callback
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert fake_twilio.auth == [f"Basic {expected}"]
    item = await stored(db, item_id)
    sid = "SM" + "0" * 31 + "1"  # the fake's first message
    assert (item.status, item.external_id, item.error) == ("sent", sid, None)

    # Twilio then calls the StatusCallback URL it was given, signed over exactly that URL.
    client = await make_client(channels=settings.channels, public_url=PUBLIC_URL)
    params = payload("status_delivered", MessageSid=sid, SmsSid=sid)
    parts = urlsplit(callback)
    response = await client.post(
        f"{parts.path}?{parts.query}",
        data=params,
        headers={"Content-Type": FORM, "X-Twilio-Signature": sign(callback, params)},
    )
    assert response.status == 200
    assert (await stored(db, item_id)).status == "delivered"


async def test_a_whatsapp_reply_goes_from_the_whatsapp_sender_with_the_prefix_kept(
    settings: Settings, db: Database, fake_twilio: FakeTwilio
) -> None:
    settings = twilio_settings(settings, fake_twilio)
    conversation_id = await conversation_with(db, "whatsapp")
    item_id = await queue_reply(db, conversation_id, "sms", "Yes, the blue one is in stock")
    await deliver(settings, item_id)
    (post,) = fake_twilio.posts
    assert (post["From"], post["To"]) == ("whatsapp:+14155238886", "whatsapp:+14155552671")
    assert (await stored(db, item_id)).status == "sent"


async def test_an_opted_out_recipient_fails_at_once_with_the_reason_and_no_retry(
    settings: Settings, db: Database, fake_twilio: FakeTwilio
) -> None:
    settings = twilio_settings(settings, fake_twilio)
    conversation_id = await conversation_with(db, "sms", From=OPTED_OUT)
    item_id = await queue_reply(db, conversation_id, "sms", "Hello again")
    await deliver(settings, item_id)
    assert fake_twilio.answered == {OPTED_OUT: 1}
    item = await stored(db, item_id)
    assert item.status == "failed"
    assert item.error is not None
    assert "opted out" in item.error and "21610" in item.error
    assert "Attempt to send to unsubscribed recipient" in item.error


async def test_twilio_errors_and_rate_limits_are_retried_until_it_takes_the_message(
    settings: Settings, db: Database, fake_twilio: FakeTwilio
) -> None:
    settings = twilio_settings(settings, fake_twilio)
    first = await queue_reply(
        db, await conversation_with(db, "sms", From=SLOW_TO_ANSWER), "sms", "one"
    )
    second = await queue_reply(
        db,
        await conversation_with(db, "sms", From=RATE_LIMITED, MessageSid="SM" + "1" * 32),
        "sms",
        "two",
    )
    await deliver(settings, first, second)
    assert fake_twilio.answered == {SLOW_TO_ANSWER: 2, RATE_LIMITED: 2}
    for item_id in (first, second):
        item = await stored(db, item_id)
        assert (item.status, item.error) == ("sent", None)
        assert item.external_id is not None and item.external_id.startswith("SM")


async def test_whatsapp_without_a_whatsapp_sender_fails_naming_the_key(
    settings: Settings, db: Database, fake_twilio: FakeTwilio
) -> None:
    settings = replace(
        twilio_settings(settings, fake_twilio),
        channels={"sms": twilio_config(api_base=fake_twilio.url, whatsapp_from=None)},
    )
    item_id = await queue_reply(db, await conversation_with(db, "whatsapp"), "sms", "hi")
    await deliver(settings, item_id)
    assert fake_twilio.posts == []
    item = await stored(db, item_id)
    assert (item.status, item.error) == (
        "failed",
        "channel sms: set whatsapp_from to reply on WhatsApp",
    )


async def test_twilio_out_of_reach_is_worth_a_retry() -> None:
    account = Account(ACCOUNT_SID, AUTH_TOKEN, "http://127.0.0.1:9")  # discard port: refused
    async with aiohttp.ClientSession() as session:
        result = await create_message(
            session, account, "+15017122661", "+14155552671", "x", [], None
        )
    assert result.retryable and result.status == "failed"
    assert result.error is not None and result.error.startswith("Twilio unreachable")


async def test_send_outside_the_worker_opens_its_own_session(fake_twilio: FakeTwilio) -> None:
    from hub.channels.base import OutboundMessage

    twilio = build_channels(Settings(channels={"sms": twilio_config(api_base=fake_twilio.url)}))[
        "sms"
    ]
    result = await twilio.send(OutboundMessage(1, "sms", "+14155552671", "hi"), None)
    assert result == SendResult("sent", external_id="SM" + "0" * 31 + "1")
    assert "StatusCallback" not in fake_twilio.posts[0]  # no public_url: nowhere to report
