"""The ingest pipeline: one inbound event becomes a stored item, contact, conversation and lead,
in one transaction, exactly once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Row, bindparam, case, insert, select, update

from hub.channels.base import InboundEvent
from hub.db import Database
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import conversation_to_dict, item_to_dict
from hub.leads.identity import link_proven_phone, match_contact
from hub.leads.leads import lead_to_dict, open_or_join_lead
from hub.leads.reminders import Due, add_callback
from hub.models import CONTACTS, CONVERSATIONS, ITEMS, RECEIPTS, utcnow
from hub.sql import insert_ignore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IngestResult:
    duplicate: bool
    item_id: int | None
    contact_id: int | None
    conversation_id: int | None = None
    lead_id: int | None = None
    lead_created: bool = False
    contact_created: bool = False
    duplicates: tuple[int, ...] = ()
    live: tuple[LiveEvent, ...] = field(default=(), repr=False)
    reminders: tuple[Due, ...] = ()  # to enqueue after commit
    outbound: tuple[int, ...] = ()  # queued outbound items (an acknowledgement) to deliver


SEEN_BEFORE = (
    select(RECEIPTS.c.item_id, RECEIPTS.c.contact_id, RECEIPTS.c.lead_id, ITEMS.c.conversation_id)
    .outerjoin(ITEMS, ITEMS.c.id == RECEIPTS.c.item_id)
    .where(
        RECEIPTS.c.channel_type == bindparam("channel_type"),
        RECEIPTS.c.channel == bindparam("channel"),
        RECEIPTS.c.external_id == bindparam("external_id"),
    )
)
LATEST_CONVERSATION = (
    select(CONVERSATIONS.c.id)
    .where(
        CONVERSATIONS.c.contact_id == bindparam("contact_id"),
        CONVERSATIONS.c.channel == bindparam("channel"),
    )
    .order_by(CONVERSATIONS.c.id.desc())
    .limit(1)
)
LATEST_THREAD = LATEST_CONVERSATION.where(CONVERSATIONS.c.thread_key == bindparam("thread_key"))
INSERT_CONVERSATION = insert(CONVERSATIONS).returning(*CONVERSATIONS.c)
TOUCH_CONVERSATION = (
    update(CONVERSATIONS)
    .where(CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(
        last_message_at=bindparam("now"),
        updated_at=bindparam("now"),
        # a closed conversation reopens, so a person's history on a channel stays in one place
        status=case((CONVERSATIONS.c.status == "closed", "open"), else_=CONVERSATIONS.c.status),
    )
    .returning(*CONVERSATIONS.c)
)
INSERT_ITEM = insert(ITEMS).returning(*ITEMS.c)
REVISED_ITEM = (
    select(ITEMS)
    .where(
        ITEMS.c.channel_type == bindparam("channel_type"),
        ITEMS.c.channel == bindparam("channel"),
        ITEMS.c.external_id == bindparam("external_id"),
    )
    .with_for_update()  # two edits of one message at once must not lose either from history
)
COMPLETE_RECEIPT = (
    update(RECEIPTS)
    .where(RECEIPTS.c.id == bindparam("receipt_id"))
    .values(item_id=bindparam("item"), contact_id=bindparam("contact"), lead_id=bindparam("lead"))
)


def claim_receipt(conn: Connection, event: InboundEvent) -> int | None:
    """The dedupe key, taken before any side effect: None when the event was seen before.

    On PostgreSQL a concurrent transaction with the same key waits here until the first
    commits and then finds the row; on SQLite writers are serialised.
    """
    return insert_ignore(
        conn,
        RECEIPTS,
        {
            "channel_type": event.channel_type,
            "channel": event.channel,
            "external_id": event.external_id,
            "created_at": utcnow(),
        },
        ["channel_type", "channel", "external_id"],
    )


def _seen_before(conn: Connection, event: InboundEvent) -> IngestResult:
    key = {
        "channel_type": event.channel_type,
        "channel": event.channel,
        "external_id": event.external_id,
    }
    receipt = conn.execute(SEEN_BEFORE, key).first()
    if receipt is None:  # claimed by a transaction that then rolled back: not stored
        return IngestResult(duplicate=True, item_id=None, contact_id=None)
    return IngestResult(
        duplicate=True,
        item_id=receipt.item_id,
        contact_id=receipt.contact_id,
        conversation_id=receipt.conversation_id,
        lead_id=receipt.lead_id,
    )


def find_or_open_conversation(
    conn: Connection, contact_id: int, event: InboundEvent, new_contact: bool
) -> Row[Any]:
    """The contact's conversation on this channel (and provider thread), with last_message_at
    moved to now; a closed one reopens, so a person's history on a channel stays in one place."""
    now = utcnow()
    conversation_id = None
    if not new_contact:  # a contact created in this transaction has no conversation yet
        params = {"contact_id": contact_id, "channel": event.channel}
        if event.thread_key is None:
            conversation_id = conn.scalar(LATEST_CONVERSATION, params)
        else:
            conversation_id = conn.scalar(LATEST_THREAD, params | {"thread_key": event.thread_key})
    if conversation_id is not None:
        return conn.execute(
            TOUCH_CONVERSATION, {"conversation_id": conversation_id, "now": now}
        ).one()
    values = {
        "contact_id": contact_id,
        "channel": event.channel,
        "channel_type": event.channel_type,
        "thread_key": event.thread_key,
        "status": "open",
        "assignee_id": None,
        "last_message_at": now,
        "created_at": now,
        "updated_at": now,
    }
    return conn.execute(INSERT_CONVERSATION, values).one()


def _keep_fields(conn: Connection, contact_id: int, fields: dict[str, Any]) -> None:
    """Extra form fields become the contact's custom fields; the newest value wins."""
    if not fields:
        return
    current = conn.scalar(select(CONTACTS.c.custom_fields).where(CONTACTS.c.id == contact_id))
    conn.execute(
        update(CONTACTS)
        .where(CONTACTS.c.id == contact_id)
        .values(custom_fields={**(current or {}), **fields}, updated_at=utcnow())
    )


def _attachment_rows(event: InboundEvent) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "content_type": a.content_type, "size": a.size, "url": None}
        | ({"source_url": a.url} if a.url else {})
        | ({"ref": a.ref} if a.ref else {})
        for a in event.attachments
    ]


def _revise(conn: Connection, event: InboundEvent, receipt_id: int) -> IngestResult | None:
    """An edit of an earlier item: its text (and media, when the edit carries some) change and
    meta["edits"] keeps each replaced text with the time of the edit. None when the original
    was never stored (the edit then becomes an item of its own)."""
    key = {"channel_type": event.channel_type, "channel": event.channel}
    item = conn.execute(REVISED_ITEM, key | {"external_id": event.revises}).first()
    if item is None:
        return None
    now = utcnow()
    meta = dict(item.meta or {})
    edited_at = (event.occurred_at or now).isoformat()
    meta["edits"] = [*meta.get("edits", []), {"text": item.text, "edited_at": edited_at}]
    values: dict[str, Any] = {"text": event.text, "meta": meta, "updated_at": now}
    if event.attachments:
        values["attachments"] = _attachment_rows(event)
    row = conn.execute(
        update(ITEMS).where(ITEMS.c.id == item.id).values(values).returning(*ITEMS.c)
    ).one()
    conn.execute(
        COMPLETE_RECEIPT,
        {"receipt_id": receipt_id, "item": item.id, "contact": item.contact_id, "lead": None},
    )
    return IngestResult(
        duplicate=False,
        item_id=item.id,
        contact_id=item.contact_id,
        conversation_id=item.conversation_id,
        live=(LiveEvent("message.updated", item_to_dict(row)),),
    )


def _acknowledge(
    conn: Connection, event: InboundEvent, conversation: Row[Any], contact_id: int, text: str
) -> int:
    """The acknowledgement of a new lead, queued on its own conversation: written with the lead,
    so it goes out once per lead (the deliver job and the stale sweep send queued items)."""
    now = utcnow()
    values = {
        "conversation_id": conversation.id,
        "contact_id": contact_id,
        "channel": event.channel,
        "channel_type": event.channel_type,
        "direction": "out",
        "kind": "message",
        "text": text,
        "attachments": [],
        "status": "queued",
        "error": None,
        "external_id": None,
        "author_id": None,
        "meta": {"auto": "acknowledge"},
        "created_at": now,
        "updated_at": now,
    }
    return int(conn.execute(INSERT_ITEM, values).one().id)


def _ingest_once(
    conn: Connection,
    event: InboundEvent,
    region: str | None,
    callback_within: timedelta | None = None,
    acknowledge: str | None = None,
) -> IngestResult:
    """One event in the caller's transaction (Core statements: no unit of work to flush).
    With `callback_within`, a new lead whose contact has a phone gets a callback reminder;
    with `acknowledge`, a new lead gets that text back on its own channel."""
    receipt_id = claim_receipt(conn, event)
    if receipt_id is None:
        return _seen_before(conn, event)
    if event.revises is not None and (revised := _revise(conn, event, receipt_id)) is not None:
        return revised
    match = match_contact(conn, event.sender, region)
    contact_id, new_contact = match.contact_id, match.created
    for phone in event.proven_phones:
        kept, merged = link_proven_phone(
            conn, contact_id, phone, region, f"{event.channel_type} contact share"
        )
        if merged:  # the older contact is kept: this is no longer a person seen for the first time
            contact_id, new_contact = kept, False
    _keep_fields(conn, contact_id, dict(event.fields))
    conversation = find_or_open_conversation(conn, contact_id, event, new_contact)
    meta = (
        dict(event.meta)
        | ({"utm": dict(event.utm)} if event.utm else {})
        | ({"fields": dict(event.fields)} if event.fields else {})
        | ({"occurred_at": event.occurred_at.isoformat()} if event.occurred_at else {})
    )
    attachments = _attachment_rows(event)
    values = {
        "conversation_id": conversation.id,
        "contact_id": contact_id,
        "channel": event.channel,
        "channel_type": event.channel_type,
        "direction": event.direction,
        "kind": event.kind,
        "text": event.text,
        "attachments": attachments,
        "status": "received",
        "error": None,
        "external_id": event.external_id,
        "author_id": None,
        "meta": meta,
        "created_at": conversation.last_message_at,
        "updated_at": conversation.last_message_at,
    }
    item = conn.execute(INSERT_ITEM, values).one()
    lead_id, new_lead = None, None
    if event.opens_lead:
        lead_id, new_lead = open_or_join_lead(conn, contact_id, event, item.id, new_contact)
    conn.execute(
        COMPLETE_RECEIPT,
        {"receipt_id": receipt_id, "item": item.id, "contact": contact_id, "lead": lead_id},
    )
    # last_message_at moved, so the conversation list re-sorts even when nothing else changed.
    live = [
        LiveEvent("message.created", item_to_dict(item)),
        LiveEvent("conversation.updated", conversation_to_dict(conversation)),
    ]
    reminder = None
    outbound: tuple[int, ...] = ()
    if new_lead is not None:
        live.append(LiveEvent("lead.created", lead_to_dict(new_lead)))
        if callback_within is not None:
            reminder = add_callback(conn, new_lead, event, callback_within)
        if acknowledge:
            outbound = (_acknowledge(conn, event, conversation, contact_id, acknowledge),)
    return IngestResult(
        duplicate=False,
        item_id=item.id,
        contact_id=contact_id,
        conversation_id=conversation.id,
        lead_id=lead_id,
        lead_created=new_lead is not None,
        contact_created=new_contact,
        duplicates=match.duplicates,
        live=tuple(live),
        reminders=(reminder,) if reminder is not None else (),
        outbound=outbound,
    )


# For a channel that runs its own statements in the same transaction (e-mail threading).
ingest_in_transaction = _ingest_once


async def ingest(
    db: Database,
    event: InboundEvent,
    region: str | None,
    callback_within: timedelta | None = None,
    acknowledge: str | None = None,
) -> IngestResult:
    """Store one event exactly once. A lost race (the same person arriving twice at once, a
    lock held by another process) retries the whole transaction, which is safe because the
    receipt makes every attempt start from nothing or find the winner's result."""
    structlog.contextvars.bind_contextvars(channel=event.channel, event_id=event.external_id)
    return await db.run_write_retrying(_ingest_once, event, region, callback_within, acknowledge)
