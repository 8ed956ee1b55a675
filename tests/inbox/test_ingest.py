"""The ingest pipeline against the real database: exactly once, one contact, one lead."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import (
    Contact,
    Conversation,
    DuplicateSuggestion,
    Identity,
    InboundReceipt,
    Lead,
    TimelineItem,
)
from tests.conftest import count


def sms(external_id: str, phone: str, text: str = "hello", **kw: object) -> InboundEvent:
    return InboundEvent(
        channel="sms",
        channel_type="twilio",
        external_id=external_id,
        source="sms",
        sender=Sender(phones=(phone,)),
        text=text,
        **kw,  # type: ignore[arg-type]
    )


async def test_redelivery_is_a_no_op(db: Database) -> None:
    first = await ingest(db, sms("SM1", "+998901234567"), "UZ")
    again = await ingest(db, sms("SM1", "+998901234567", text="changed"), "UZ")
    assert not first.duplicate and again.duplicate
    assert (again.item_id, again.contact_id, again.lead_id, again.conversation_id) == (
        first.item_id,
        first.contact_id,
        first.lead_id,
        first.conversation_id,
    )
    assert again.live == ()
    assert await count(db, TimelineItem) == 1
    async with db.read() as session:
        item = await session.get_one(TimelineItem, first.item_id)
    assert item.text == "hello"


async def test_concurrent_duplicates_store_once(db: Database) -> None:
    results = await asyncio.gather(
        *(ingest(db, sms("SM-dup", "+998901234567"), "UZ") for _ in range(20))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.item_id for r in results}) == 1
    assert await count(db, TimelineItem) == 1
    assert await count(db, InboundReceipt) == 1


async def test_concurrent_first_messages_of_one_person_make_one_contact_and_lead(
    db: Database,
) -> None:
    formats = [
        "+998 90 123 45 67",
        "90 123 45 67",
        "8 (90) 123-45-67",
        "00998901234567",
        "998901234567",
        "+998 (90) 123-45-67",
        "901234567",
    ]
    results = await asyncio.gather(
        *(ingest(db, sms(f"SM{n}", phone), "UZ") for n, phone in enumerate(formats))
    )
    assert not any(r.duplicate for r in results)
    assert len({r.contact_id for r in results}) == 1
    assert len({r.lead_id for r in results}) == 1
    assert sum(r.lead_created for r in results) == 1
    assert await count(db, Contact) == 1
    assert await count(db, Lead) == 1
    assert await count(db, Conversation) == 1
    assert await count(db, TimelineItem) == len(formats)
    assert await count(db, Identity) == 1


async def test_a_contact_with_an_open_lead_gets_no_second_one_but_a_closed_lead_does(
    db: Database,
) -> None:
    first = await ingest(db, sms("SM1", "+998901234567"), "UZ")
    second = await ingest(db, sms("SM2", "+998901234567"), "UZ")
    assert second.lead_id == first.lead_id and not second.lead_created
    async with db.write() as session:
        lead = await session.get_one(Lead, first.lead_id)
        lead.status = "won"
    third = await ingest(db, sms("SM3", "+998901234567"), "UZ")
    assert third.lead_created and third.lead_id != first.lead_id


async def test_lead_source_and_live_events(db: Database) -> None:
    event = InboundEvent(
        channel="callback",
        channel_type="form",
        external_id="idem:abc",
        kind="form",
        source="form",
        form_id="callback",
        sender=Sender(phones=("+998901234567",)),
        utm={"source": "google", "campaign": "spring"},
    )
    result = await ingest(db, event, "UZ")
    assert [e.type for e in result.live] == [
        "message.created",
        "conversation.updated",
        "lead.created",
    ]
    lead_event = result.live[2].data
    assert lead_event["utm"]["source"] == "google" and lead_event["form_id"] == "callback"
    assert lead_event["source"] == "form"


async def test_one_event_claiming_two_people_suggests_a_duplicate_and_merges_nothing(
    db: Database,
) -> None:
    by_phone = await ingest(db, sms("SM1", "+998901234567"), "UZ")
    by_mail = await ingest(
        db,
        InboundEvent(
            channel="support",
            channel_type="email",
            external_id="<m1@x>",
            source="email",
            sender=Sender(emails=("ali@example.com",)),
        ),
        "UZ",
    )
    assert by_phone.contact_id != by_mail.contact_id
    both = await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:both",
            kind="form",
            source="form",
            sender=Sender(phones=("901234567",), emails=("ALI@example.com",)),
        ),
        "UZ",
    )
    assert both.contact_id == by_phone.contact_id  # the phone is the stronger claim
    assert both.duplicates == (by_mail.contact_id,)
    assert await count(db, Contact) == 2
    async with db.read() as session:
        suggestion = await session.scalar(select(DuplicateSuggestion))
        email_owner = await session.scalar(
            select(Identity.contact_id).where(Identity.kind == "email")
        )
    assert suggestion is not None and suggestion.status == "open"
    assert {suggestion.contact_id, suggestion.other_id} == {by_phone.contact_id, by_mail.contact_id}
    assert email_owner == by_mail.contact_id


async def test_an_invalid_number_is_kept_as_written_and_never_fixed(db: Database) -> None:
    result = await ingest(db, sms("SM1", "12-34"), "UZ")
    async with db.read() as session:
        identity = await session.scalar(select(Identity))
    assert identity is not None
    assert (identity.value, identity.valid) == ("12-34", False)
    again = await ingest(db, sms("SM2", "12-34"), "UZ")
    assert again.contact_id == result.contact_id


async def test_closed_conversation_reopens_on_a_new_message(db: Database) -> None:
    first = await ingest(db, sms("SM1", "+998901234567"), "UZ")
    async with db.write() as session:
        conversation = await session.get_one(Conversation, first.conversation_id)
        conversation.status = "closed"
    second = await ingest(db, sms("SM2", "+998901234567"), "UZ")
    assert second.conversation_id == first.conversation_id
    async with db.read() as session:
        conversation = await session.get_one(Conversation, first.conversation_id)
    assert conversation.status == "open"


async def test_known_variants_of_one_number_are_one_person(db: Database) -> None:
    pairs = [("+55 11 8765-4321", "+55 11 98765-4321"), ("+52 1 55 1234 5678", "+52 55 1234 5678")]
    for n, (old, new) in enumerate(pairs):
        first = await ingest(db, sms(f"A{n}", old), None)
        second = await ingest(db, sms(f"B{n}", new), None)
        assert first.contact_id == second.contact_id, (old, new)
    assert await count(db, Contact) == 2
