"""Issue 5's acceptance, end to end over HTTP: signed webhooks in, a reply through the API out
through the real worker and the official twilio client, delivery reports back."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from hub.auth.users import create_user
from hub.db import Database
from hub.models import Contact, Conversation, TimelineItem
from tests.channels.test_twilio import FORM, PUBLIC_URL, payload, sign, twilio_config
from tests.channels.test_twilio_send import FakeTwilio, fake_twilio  # noqa: F401  # fixture
from tests.conftest import PASSWORD, auth, count
from tests.workers.test_deliver import run_worker
from webhooks.context import RUNTIME


async def signed_post(client: Any, kind: str, params: dict[str, str], url: str = "") -> Any:
    path = f"/webhooks/twilio/sms/{kind}"
    signature = sign(url or PUBLIC_URL + path, params)
    return await client.post(
        path,
        data=urlencode(params),
        headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
    )


async def test_sms_and_whatsapp_from_one_number_and_a_whatsapp_reply(
    make_client: Any,
    db: Database,
    fake_twilio: FakeTwilio,  # noqa: F811
) -> None:
    client = await make_client(
        channels={"sms": twilio_config(api_base=fake_twilio.url)}, public_url=PUBLIC_URL
    )
    for name in ("sms", "whatsapp"):
        for _ in range(2):  # the same MessageSid twice: one item
            response = await signed_post(client, "sms", payload(name))
            assert response.status == 200
            assert response.content_type == "text/xml"
    assert await count(db, Contact) == 1
    assert await count(db, Conversation) == 2
    assert await count(db, TimelineItem) == 2

    forged = payload("sms", MessageSid="SMforged0000000000000000000000000", Body="hi")
    for signature in ("", "bm90IGEgc2lnbmF0dXJl", sign("https://other.example.com/x", forged)):
        response = await client.post(
            "/webhooks/twilio/sms/sms",
            data=urlencode(forged),
            headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
        )
        assert response.status == 403
    assert await count(db, TimelineItem) == 2

    async with db.write() as session:
        await create_user(session, "op@example.com", PASSWORD, "operator")
    login = await client.post(
        "/api/auth/login", json={"email": "op@example.com", "password": PASSWORD}
    )
    token = (await login.json())["token"]
    async with db.read() as session:
        whatsapp = await session.scalar(
            select(Conversation).where(Conversation.thread_key.like("whatsapp:%"))
        )
    assert whatsapp is not None
    reply = await client.post(
        f"/api/conversations/{whatsapp.id}/messages", json={"text": "In stock"}, headers=auth(token)
    )
    assert reply.status == 202
    item_id = (await reply.json())["id"]
    await run_worker(client.server.app[RUNTIME])
    (post,) = fake_twilio.posts
    assert post["From"].startswith("whatsapp:") and post["To"] == "whatsapp:+14155552671"
    async with db.read() as session:
        sent = await session.get_one(TimelineItem, item_id)
    assert sent.status == "sent" and sent.external_id

    callback = f"{PUBLIC_URL}/webhooks/twilio/sms/status?item={item_id}"
    delivered = payload("status_delivered", MessageSid=sent.external_id, SmsSid=sent.external_id)
    response = await client.post(
        f"/webhooks/twilio/sms/status?item={item_id}",
        data=urlencode(delivered),
        headers={"Content-Type": FORM, "X-Twilio-Signature": sign(callback, delivered)},
    )
    assert response.status == 200
    async with db.read() as session:
        assert (await session.get_one(TimelineItem, item_id)).status == "delivered"

    second = await client.post(
        f"/api/conversations/{whatsapp.id}/messages", json={"text": "Hello?"}, headers=auth(token)
    )
    second_id = (await second.json())["id"]
    await run_worker(client.server.app[RUNTIME])
    async with db.read() as session:
        sid = (await session.get_one(TimelineItem, second_id)).external_id
    assert sid
    failed = payload("status_whatsapp_failed_63016", MessageSid=sid, SmsSid=sid)
    response = await signed_post(client, "status", failed)
    assert response.status == 200
    async with db.read() as session:
        item = await session.get_one(TimelineItem, second_id)
    assert item.status == "failed"
    assert item.error is not None and "24-hour" in item.error
