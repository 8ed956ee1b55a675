"""Delivery reports for outbound items: a provider's status callback moves an item forward only,
and each report counts once.

A channel's parse() marks a report by putting a StatusUpdate under meta[STATUS_UPDATE] of an
InboundEvent whose external_id is the report's own dedupe key (for Twilio, MessageSid + status);
the webhook route hands such events here instead of to ingest().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, select, update

from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import COMPLETE_RECEIPT, IngestResult, claim_receipt
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import item_to_dict
from hub.models import ITEMS, utcnow

log = structlog.get_logger(__name__)

STATUS_UPDATE = "status_update"

# How far delivery has got. Providers send callbacks concurrently, so they arrive out of order:
# a report never moves an item to a lower rank (a late "sent" leaves "delivered" alone). A
# delivery receipt outranks a failure, since it is positive evidence the person got it.
STATUS_RANK: dict[str, int] = {"queued": 0, "sent": 1, "failed": 2, "delivered": 3, "read": 4}


@dataclass(frozen=True)
class StatusUpdate:
    status: str  # one of STATUS_RANK
    message_id: str  # the provider's id of the outbound message
    item_id: int | None = None  # our item, when the provider echoes it back (callback URL)
    error: str | None = None  # in words, for a failure
    details: tuple[tuple[str, str], ...] = ()  # kept in the item's meta (provider status, code)


def status_event(
    channel: str, channel_type: str, report_id: str, report: StatusUpdate
) -> InboundEvent:
    """The event a channel's parse() returns for one delivery report."""
    if report.status not in STATUS_RANK:
        raise ValueError(f"unknown delivery status {report.status!r}")
    return InboundEvent(
        channel=channel,
        channel_type=channel_type,
        external_id=report_id,
        sender=Sender(),
        kind="event",
        opens_lead=False,
        meta={STATUS_UPDATE: report},
    )


def status_update_of(event: InboundEvent) -> StatusUpdate | None:
    report = event.meta.get(STATUS_UPDATE)
    return report if isinstance(report, StatusUpdate) else None


def _target(conn: Connection, event: InboundEvent, report: StatusUpdate) -> Any:
    """The outbound item, locked until commit so concurrent reports apply one after another
    (SQLite has no FOR UPDATE and needs none: its writers are serialised)."""
    query = select(ITEMS).where(
        ITEMS.c.channel_type == event.channel_type,
        ITEMS.c.channel == event.channel,
        ITEMS.c.direction == "out",
    )
    if report.item_id is not None:
        # Found by our id even before the send's result (with the provider id) is committed;
        # a different provider id is another attempt's message, not this item's.
        query = query.where(
            ITEMS.c.id == report.item_id,
            ITEMS.c.external_id.is_(None) | (ITEMS.c.external_id == report.message_id),
        )
    else:
        query = query.where(ITEMS.c.external_id == report.message_id)
    return conn.execute(query.with_for_update()).first()


def _apply_once(conn: Connection, event: InboundEvent, report: StatusUpdate) -> IngestResult:
    receipt_id = claim_receipt(conn, event)
    if receipt_id is None:
        return IngestResult(duplicate=True, item_id=None, contact_id=None)
    item = _target(conn, event, report)
    if item is None:
        # Sent from outside the hub (the provider's console, another app on the same number).
        log.info("status_for_unknown_message", channel=event.channel, message=report.message_id)
        return IngestResult(duplicate=False, item_id=None, contact_id=None)
    conn.execute(
        COMPLETE_RECEIPT,
        {"receipt_id": receipt_id, "item": item.id, "contact": item.contact_id, "lead": None},
    )
    result = IngestResult(
        duplicate=False,
        item_id=item.id,
        contact_id=item.contact_id,
        conversation_id=item.conversation_id,
    )
    if STATUS_RANK[report.status] <= STATUS_RANK.get(item.status, -1):
        return result  # a late report: the item is already further along
    now = utcnow()
    row = conn.execute(
        update(ITEMS)
        .where(ITEMS.c.id == item.id)
        .values(
            status=report.status,
            error=report.error if report.status == "failed" else None,
            external_id=item.external_id or report.message_id,
            meta={**(item.meta or {}), **dict(report.details)},
            updated_at=now,
        )
        .returning(*ITEMS.c)
    ).one()
    return IngestResult(
        duplicate=False,
        item_id=item.id,
        contact_id=item.contact_id,
        conversation_id=item.conversation_id,
        live=(LiveEvent("message.updated", item_to_dict(row)),),
    )


async def apply_status_update(db: Database, event: InboundEvent) -> IngestResult:
    """Apply one delivery report exactly once; `live` holds message.updated when it moved."""
    report = status_update_of(event)
    if report is None:
        raise ValueError(f"event {event.external_id!r} carries no {STATUS_UPDATE}")
    return await db.run_write_retrying(_apply_once, event, report)
