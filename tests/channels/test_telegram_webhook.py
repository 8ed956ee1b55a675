"""Telegram updates through the real webhook route and database: one person, one conversation,
one lead; edits revise; a share of one's own contact links (and merges) the phone; once only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.channels.base import InboundEvent, Sender
from hub.channels.telegram.callbacks import HANDLERS, ButtonPress, button_handler
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import (
    AuditEntry,
    Contact,
    Conversation,
    Identity,
    InboundReceipt,
    Lead,
    TimelineItem,
)
from tests.channels.test_telegram import SECRET, config, payload
from tests.conftest import count

Client = TestClient[Any, Any]
URL = "/webhooks/telegram/tg"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}


async def telegram_client(make_client: Any) -> Client:
    client: Client = await make_client(channels={"tg": config()})
    return client


async def post(client: Client, name: str, **changes: Any) -> None:
    body = payload(name)
    body.update(changes)
    response = await client.post(URL, data=json.dumps(body), headers=HEADERS)
    assert response.status == 200, await response.text()
    assert await response.read() == b""


async def items(db: Database) -> list[TimelineItem]:
    async with db.read() as session:
        return list(await session.scalars(select(TimelineItem).order_by(TimelineItem.id)))


async def live_contacts(db: Database) -> list[Contact]:
    async with db.read() as session:
        query = select(Contact).where(Contact.merged_into_id.is_(None))
        return list(await session.scalars(query))


async def identities(db: Database, contact_id: int) -> set[tuple[str, str]]:
    async with db.read() as session:
        rows = await session.scalars(select(Identity).where(Identity.contact_id == contact_id))
        return {(i.kind, i.value) for i in rows}


async def test_text_photo_edit_and_own_contact_make_one_contact_conversation_and_lead(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    for name in ("text", "photo_caption", "edited_message", "contact_own"):
        await post(client, name)
    (contact,) = await live_contacts(db)
    assert contact.name == "Dilnoza Karimova"
    assert await identities(db, contact.id) == {
        ("telegram", "123456789"),
        ("phone", "+998901234567"),
    }
    assert await count(db, Conversation) == 1 and await count(db, Lead) == 1
    text, photo, share = await items(db)
    assert text.text == "Salom! Do you deliver to Samarkand?"
    assert text.meta["edits"] == [
        {"text": "Salom! Do you deliver to Tashkent?", "edited_at": "2024-11-25T10:29:00+00:00"}
    ]
    assert photo.attachments[0]["ref"] == "AgACAgIAAxkBAAIBZmdEAAFr0largeAAdQQ"
    assert share.text == "[contact Dilnoza Karimova +998901234567]"
    async with db.read() as session:
        (conversation,) = await session.scalars(select(Conversation))
        lead = await session.scalar(select(Lead))
        telegram = await session.scalar(select(Identity).where(Identity.kind == "telegram"))
    assert conversation.thread_key == "123456789" and conversation.channel_type == "telegram"
    assert lead is not None and lead.source == "telegram" and lead.channel == "tg"
    assert telegram is not None and telegram.meta == {"username": "dilnoza_k"}


async def test_a_contact_share_merges_the_contact_who_filled_a_form_yesterday(
    make_client: Any, db: Database
) -> None:
    form = await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:yesterday",
            kind="form",
            source="form",
            form_id="callback",
            text="call me about the sofa",
            sender=Sender(phones=("90 123 45 67",), name="Dilnoza"),
        ),
        "UZ",
    )
    client = await telegram_client(make_client)
    await post(client, "text")  # a stranger on Telegram, for now: a second contact and lead
    assert len(await live_contacts(db)) == 2 and await count(db, Lead) == 2
    await post(client, "contact_own")
    (contact,) = await live_contacts(db)
    assert contact.id == form.contact_id  # the contact operators already knew is kept
    assert await identities(db, contact.id) == {
        ("telegram", "123456789"),
        ("phone", "+998901234567"),
    }
    async with db.read() as session:
        leads = list(await session.scalars(select(Lead)))
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "contact.merge"))
    assert [(lead.id, lead.status, lead.source) for lead in leads] == [
        (form.lead_id, "open", "form")
    ]
    assert audit is not None and audit.user_id is None
    assert audit.meta["reason"] == "telegram contact share"
    assert audit.meta["removed_lead"]["source"] == "telegram"
    assert {i.contact_id for i in await items(db)} == {contact.id}
    assert len(await items(db)) == 3  # the form, the text and the share: every item kept
    # Later messages join the kept contact's Telegram conversation.
    await post(client, "sticker")
    assert await count(db, Conversation) == 2  # the form's and the Telegram chat
    assert {i.contact_id for i in await items(db)} == {contact.id}


async def test_a_form_after_the_first_telegram_message_is_merged_into_the_older_contact(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    await post(client, "text")
    (first,) = await live_contacts(db)
    form = await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:later",
            kind="form",
            source="form",
            sender=Sender(phones=("+998 90 123 45 67",), emails=("dilnoza@example.com",)),
        ),
        "UZ",
    )
    assert form.contact_created and await count(db, Lead) == 2
    await post(client, "contact_own")
    (contact,) = await live_contacts(db)
    assert contact.id == first.id  # the older contact is kept
    assert await identities(db, contact.id) == {
        ("telegram", "123456789"),
        ("phone", "+998901234567"),
        ("email", "dilnoza@example.com"),
    }
    async with db.read() as session:
        (lead,) = await session.scalars(select(Lead))
        gone = await session.get_one(Contact, form.contact_id)
    assert (lead.source, lead.status, lead.contact_id) == ("telegram", "open", contact.id)
    assert gone.merged_into_id == contact.id
    # A second share of the same number changes nothing.
    again = payload("contact_own")
    again["update_id"] += 1000
    again["message"]["message_id"] += 1000
    await post(client, "contact_own", **again)
    assert await count(db, AuditEntry) == 1
    assert len(await items(db)) == 4 and len(await live_contacts(db)) == 1


async def test_concurrent_contact_shares_merge_once(make_client: Any, db: Database) -> None:
    await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:race",
            kind="form",
            source="form",
            sender=Sender(phones=("+998901234567",)),
        ),
        "UZ",
    )
    client = await telegram_client(make_client)
    await post(client, "text")
    shares = []
    for n in range(6):
        share = payload("contact_own")
        share["update_id"] += n
        share["message"]["message_id"] += n
        shares.append(share)
    await asyncio.gather(*(post(client, "contact_own", **share) for share in shares))
    assert len(await live_contacts(db)) == 1
    assert await count(db, AuditEntry) == 1
    assert len(await items(db)) == 8
    assert await count(db, Lead) == 1


async def test_a_first_message_that_is_a_contact_share_joins_the_existing_contact(
    make_client: Any, db: Database
) -> None:
    form = await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:earlier",
            kind="form",
            source="form",
            sender=Sender(phones=("+998901234567",)),
        ),
        "UZ",
    )
    client = await telegram_client(make_client)
    await post(client, "contact_own")
    (contact,) = await live_contacts(db)
    assert contact.id == form.contact_id
    assert await count(db, Lead) == 1
    assert ("telegram", "123456789") in await identities(db, contact.id)


async def test_a_shared_contact_of_someone_else_links_no_phone(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    await post(client, "contact_foreign")
    (contact,) = await live_contacts(db)
    assert await identities(db, contact.id) == {("telegram", "123456789")}
    (item,) = await items(db)
    assert item.meta["contact"]["phone_number"] == "+998935554433"
    assert await count(db, AuditEntry) == 0


async def test_the_same_update_twice_or_concurrently_is_one_item(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    await asyncio.gather(*(post(client, "text") for _ in range(10)))
    await post(client, "text")
    # The same message under another update id (a re-sent webhook after a bot restart).
    await post(client, "text", update_id=815399999)
    assert len(await items(db)) == 1
    assert await count(db, InboundReceipt) == 1


async def test_an_edit_delivered_twice_is_kept_once_in_the_history(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    await post(client, "text")
    await asyncio.gather(*(post(client, "edited_message") for _ in range(5)))
    second = payload("edited_message")
    second["update_id"] += 100
    second["edited_message"]["text"] = "Salom! Bukhara?"
    second["edited_message"]["edit_date"] += 60
    response = await client.post(URL, data=json.dumps(second), headers=HEADERS)
    assert response.status == 200
    (item,) = await items(db)
    assert item.text == "Salom! Bukhara?"
    assert [e["text"] for e in item.meta["edits"]] == [
        "Salom! Do you deliver to Tashkent?",
        "Salom! Do you deliver to Samarkand?",
    ]


async def test_an_edit_of_a_message_never_received_is_stored_as_a_message(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    await post(client, "edited_message")
    (item,) = await items(db)
    assert item.text == "Salom! Do you deliver to Samarkand?"
    assert item.external_id == "update:815390010"
    assert await count(db, Lead) == 1


async def test_service_updates_and_foreign_buttons_store_nothing(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    await post(client, "my_chat_member")
    foreign = payload("callback_query")
    foreign["callback_query"]["data"] = "other-bot:42"  # not a hub button: acknowledged only
    await post(client, "callback_query", callback_query=foreign["callback_query"])
    assert await count(db, TimelineItem) == 0 and await count(db, Contact) == 0
    assert await count(db, InboundReceipt) == 0
    # A reminder button pressed from a Telegram account no hub user linked: answered, and
    # nothing changes (the press is remembered so a redelivery is answered the same way).
    response = await client.post(URL, data=json.dumps(payload("callback_query")), headers=HEADERS)
    answer = await response.json()
    assert answer["method"] == "answerCallbackQuery" and "not linked" in answer["text"]
    assert await count(db, TimelineItem) == 0 and await count(db, Contact) == 0


async def test_a_wrong_secret_is_401_and_a_bad_body_400_with_nothing_stored(
    make_client: Any, db: Database
) -> None:
    client = await telegram_client(make_client)
    body = json.dumps(payload("text"))
    wrong = await client.post(URL, data=body, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
    missing = await client.post(URL, data=body)
    assert (wrong.status, missing.status) == (401, 401)
    bad = await client.post(URL, data=b'{"update_id": "one"}', headers=HEADERS)
    assert bad.status == 400
    assert "not a Telegram Update" in (await bad.json())["error"]
    assert await count(db, TimelineItem) == 0
    other = await client.post("/webhooks/telegram/nope", data=body, headers=HEADERS)
    assert other.status == 404


async def test_a_registered_button_handler_stores_its_events_once(
    make_client: Any, db: Database
) -> None:
    @button_handler("reminder-test")
    def pressed(press: ButtonPress) -> list[InboundEvent]:
        return [
            InboundEvent(
                channel=press.channel,
                channel_type="telegram",
                external_id=f"update:{press.update_id}",
                kind="event",
                sender=Sender(telegram_id=press.user_id, name=press.name),
                text=f"reminder {press.args[0]}: {press.args[1]}",
                thread_key=press.chat_id,
                opens_lead=False,
            )
        ]

    body = payload("callback_query")
    body["callback_query"]["data"] = "hub:reminder-test:42:done"
    client = await telegram_client(make_client)
    try:
        for _ in range(2):
            response = await client.post(URL, data=json.dumps(body), headers=HEADERS)
            assert response.status == 200
    finally:
        del HANDLERS["reminder-test"]
    (item,) = await items(db)
    assert (item.kind, item.text) == ("event", "reminder 42: done")
    assert await count(db, Lead) == 0
