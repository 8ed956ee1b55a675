"""The ingest pipeline: one inbound event becomes a stored item, contact, conversation and lead,
in one transaction, exactly once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.channels.base import InboundEvent
from hub.db import WRITE_ATTEMPTS, Database, is_retryable
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import conversation_to_dict, item_to_dict
from hub.leads.identity import match_contact
from hub.leads.leads import lead_to_dict, open_or_join_lead
from hub.models import Contact, Conversation, InboundReceipt, TimelineItem, utcnow
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


def _claim_receipt(session: Session, event: InboundEvent) -> int | None:
    """The dedupe key, taken before any side effect: None when the event was seen before.

    On PostgreSQL a concurrent transaction with the same key waits here until the first
    commits and then finds the row; on SQLite writers are serialised.
    """
    return insert_ignore(
        session,
        InboundReceipt.__table__,  # type: ignore[arg-type]  # a declarative Table
        {
            "channel_type": event.channel_type,
            "channel": event.channel,
            "external_id": event.external_id,
        },
        ["channel_type", "channel", "external_id"],
    )


def _seen_before(session: Session, event: InboundEvent) -> IngestResult:
    receipt = session.scalar(
        select(InboundReceipt).where(
            InboundReceipt.channel_type == event.channel_type,
            InboundReceipt.channel == event.channel,
            InboundReceipt.external_id == event.external_id,
        )
    )
    conversation_id = None
    if receipt is not None and receipt.item_id is not None:
        item = session.get(TimelineItem, receipt.item_id)
        conversation_id = item.conversation_id if item else None
    return IngestResult(
        duplicate=True,
        item_id=receipt.item_id if receipt else None,
        contact_id=receipt.contact_id if receipt else None,
        conversation_id=conversation_id,
        lead_id=receipt.lead_id if receipt else None,
    )


def find_or_open_conversation(
    session: Session, contact_id: int, event: InboundEvent
) -> tuple[Conversation, bool]:
    """The contact's conversation on this channel (and provider thread); a closed one reopens,
    so a person's history on a channel stays in one place."""
    query = select(Conversation).where(
        Conversation.contact_id == contact_id, Conversation.channel == event.channel
    )
    if event.thread_key is not None:
        query = query.where(Conversation.thread_key == event.thread_key)
    conversation = session.scalar(query.order_by(Conversation.id.desc()).limit(1))
    if conversation is None:
        conversation = Conversation(
            contact_id=contact_id,
            channel=event.channel,
            channel_type=event.channel_type,
            thread_key=event.thread_key,
            status="open",
        )
        session.add(conversation)
        session.flush()
        return conversation, True
    changed = conversation.status == "closed"
    if changed:
        conversation.status = "open"
    return conversation, changed


def _keep_fields(contact: Contact, fields: dict[str, Any]) -> None:
    if fields:
        contact.custom_fields = {**(contact.custom_fields or {}), **fields}


def _ingest_once(session: Session, event: InboundEvent, region: str | None) -> IngestResult:
    receipt_id = _claim_receipt(session, event)
    if receipt_id is None:
        return _seen_before(session, event)
    match = match_contact(session, event.sender, region)
    contact = match.contact
    _keep_fields(contact, dict(event.fields))
    conversation, _reopened = find_or_open_conversation(session, contact.id, event)
    now = utcnow()
    conversation.last_message_at = now
    item = TimelineItem(
        conversation_id=conversation.id,
        contact_id=contact.id,
        channel=event.channel,
        channel_type=event.channel_type,
        direction=event.direction,
        kind=event.kind,
        text=event.text,
        attachments=[
            {"name": a.name, "content_type": a.content_type, "size": a.size, "url": None}
            | ({"source_url": a.url} if a.url else {})
            | ({"ref": a.ref} if a.ref else {})
            for a in event.attachments
        ],
        status="received",
        external_id=event.external_id,
        meta=dict(event.meta)
        | ({"utm": dict(event.utm)} if event.utm else {})
        | ({"fields": dict(event.fields)} if event.fields else {})
        | ({"occurred_at": event.occurred_at.isoformat()} if event.occurred_at else {}),
        created_at=now,
    )
    session.add(item)
    session.flush()
    lead = None
    lead_created = False
    if event.opens_lead:
        lead, lead_created = open_or_join_lead(session, contact.id, event, item.id)
    receipt = session.get_one(InboundReceipt, receipt_id)
    receipt.item_id = item.id
    receipt.contact_id = contact.id
    receipt.lead_id = lead.id if lead else None
    # last_message_at moved, so the conversation list re-sorts even when nothing else changed.
    live = [
        LiveEvent("message.created", item_to_dict(item)),
        LiveEvent("conversation.updated", conversation_to_dict(conversation)),
    ]
    if lead is not None and lead_created:
        live.append(LiveEvent("lead.created", lead_to_dict(lead)))
    return IngestResult(
        duplicate=False,
        item_id=item.id,
        contact_id=contact.id,
        conversation_id=conversation.id,
        lead_id=lead.id if lead else None,
        lead_created=lead_created,
        contact_created=match.created,
        duplicates=match.duplicates,
        live=tuple(live),
    )


async def ingest(db: Database, event: InboundEvent, region: str | None) -> IngestResult:
    """Store one event exactly once. A lost race (the same person arriving twice at once, a
    lock held by another process) retries the whole transaction, which is safe because the
    receipt makes every attempt start from nothing or find the winner's result."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            result = await db.run_write(_ingest_once, event, region)
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS or not is_retryable(exc):
                raise
            log.info(
                "ingest_retry",
                channel=event.channel,
                event_id=event.external_id,
                attempt=attempt,
                reason=type(exc).__name__,
            )
            await asyncio.sleep(0.01 * attempt)
            continue
        return result
    raise AssertionError("unreachable")
