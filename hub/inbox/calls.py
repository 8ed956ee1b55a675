"""Calls on the timeline: one `call` item per call (keyed by the provider's call id), moved
ringing -> answered -> ended, or missed, by the provider's events in whatever order they arrive;
the contact, lead and callback reminder a call brings; and the caller card for a screen pop.

A channel's parse() marks a call event by putting a CallEvent under meta[CALL_EVENT] of an
InboundEvent whose external_id is the event's own dedupe key (call id + what happened); the
webhook route hands such events here instead of to ingest(). The item's status is recomputed
from every event recorded in its meta, so an `ended` before its `answered`, or a late `ringing`,
still gives the right final state, and a redelivered event stops at its receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import Connection, Row, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.channels.base import Attachment, InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import (
    COMPLETE_RECEIPT,
    INSERT_ITEM,
    IngestResult,
    claim_receipt,
    find_or_open_conversation,
)
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import conversation_to_dict, item_to_dict
from hub.leads.contacts import contacts_to_dicts
from hub.leads.identity import match_contact, phone_filter
from hub.leads.leads import lead_to_dict, open_or_join_lead
from hub.leads.phones import looks_like_phone, normalize_phone
from hub.leads.reminders import OPEN_STATUSES, REMINDERS, Due, add_callback, reminder_to_dict
from hub.models import ITEMS, LEADS, Contact, Identity, Lead, Reminder, TimelineItem, utcnow

log = structlog.get_logger(__name__)

CALL_EVENT = "call_event"
# What a provider can tell about a call. recording and comment change no status.
EVENTS = ("ringing", "answered", "ended", "missed", "recording", "comment")
# Why a call was missed, in the words of the contract.
MISSED_REASONS = ("no-answer", "busy", "failed", "cancelled", "abandoned")
REASON_TEXT = {
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "failed",
    "cancelled": "cancelled",
    "abandoned": "hung up before an answer",
}
# What carriers and Twilio put in From when the caller hides the number: not a phone, and
# not one person (every anonymous caller would become one contact).
ANONYMOUS = frozenset(
    {"", "+266696687", "266696687", "anonymous", "restricted", "unknown", "private", "unavailable"}
)
MAX_EVENTS = 50  # events kept in one item's meta; a call has a handful
MAX_CALL_ID = 120
CARD_ITEMS = 10

FIND_CALL = (
    select(ITEMS)
    .where(
        ITEMS.c.channel_type == bindparam("channel_type"),
        ITEMS.c.channel == bindparam("channel"),
        ITEMS.c.external_id == bindparam("call_id"),
        ITEMS.c.kind == "call",
    )
    .with_for_update()  # two events of one call at once apply one after the other
)
LEAD_ROW = select(LEADS).where(LEADS.c.id == bindparam("lead_id"))


@dataclass(frozen=True)
class CallEvent:
    """One thing a provider says about a call, already in the contract's words."""

    call_id: str
    event: str  # one of EVENTS
    direction: Literal["in", "out"]
    party: str  # the other side's number: the caller of an inbound call, the callee of an outbound
    line: str | None = None  # our number: the one dialled (in), or the one calling out (out)
    duration: int | None = None  # seconds
    answered: bool = False  # an "ended" that proves the call was answered (talk time)
    reason: str | None = None  # a missed call's reason, one of MISSED_REASONS
    recording_url: str | None = None
    recording_id: str | None = None
    recording_duration: int | None = None
    voicemail: bool = False  # the recording is a message left after nobody answered
    comment: str | None = None
    provider_status: str | None = None  # the provider's own word (Twilio's CallStatus)
    occurred_at: str | None = None
    step: str = ""  # which provider webhook said it (Twilio answers each differently)


def party_phones(raw: str) -> tuple[str, ...]:
    """The caller's number as a phone claim; none for a hidden or non-phone caller id."""
    value = raw.strip()
    if value.lower() in ANONYMOUS or not looks_like_phone(value):
        return ()
    return (value,)


def call_event(
    channel: str,
    channel_type: str,
    key: str,
    call: CallEvent,
    name: str | None = None,
    thread_key: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> InboundEvent:
    """The event a channel's parse() returns for one call event; `key` tells this event apart
    from the call's other events (its dedupe key is call id + key)."""
    if call.event not in EVENTS:
        raise ValueError(f"unknown call event {call.event!r}")
    inbound = call.direction == "in"
    return InboundEvent(
        channel=channel,
        channel_type=channel_type,
        external_id=f"{call.call_id}:{key}"[:200],
        sender=Sender(phones=party_phones(call.party), name=name),
        kind="call",
        source="call",
        direction=call.direction,
        opens_lead=inbound,  # an outbound call is our interest, not theirs
        meta={CALL_EVENT: call} | ({"dialled_number": call.line} if inbound else {}),
        thread_key=thread_key,
        attachments=attachments,  # a recording the worker fetches and keeps
    )


def call_event_of(event: InboundEvent) -> CallEvent | None:
    call = event.meta.get(CALL_EVENT)
    return call if isinstance(call, CallEvent) else None


# --- the state machine ---------------------------------------------------------------------


def _record(call: CallEvent) -> dict[str, Any]:
    """How one event is kept in the item's meta["events"]."""
    record: dict[str, Any] = {"event": call.event, "received_at": utcnow().isoformat()}
    for name in ("provider_status", "occurred_at", "duration", "reason", "step"):
        value = getattr(call, name)
        if value not in (None, ""):
            record[name] = value
    if call.answered:
        record["answered"] = True
    if call.recording_url:
        record["recording_url"] = call.recording_url
    return record


def call_status(events: Sequence[dict[str, Any]]) -> str:
    """The call's state from every event seen, in any order: answered wins (an answered call
    that also reports a missed leg was still answered); then missed, or an end that nobody
    answered (the caller hung up in the queue); ringing until anything else is known."""
    kinds = {e["event"] for e in events}
    answered = "answered" in kinds or any(
        e["event"] == "ended" and e.get("answered") for e in events
    )
    if answered:
        return "ended" if "ended" in kinds else "answered"
    if "missed" in kinds or "ended" in kinds:
        return "missed"
    return "ringing"


def _missed_reason(events: Sequence[dict[str, Any]]) -> str:
    for record in events:
        if record["event"] == "missed" and record.get("reason"):
            return str(record["reason"])
    return "abandoned" if any(e["event"] == "ended" for e in events) else "no-answer"


def _clock(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


def summary(direction: str, status: str, meta: dict[str, Any]) -> str:
    """The item's text: what an operator reads in the timeline."""
    inbound = direction == "in"
    word = "Incoming call" if inbound else "Outgoing call"
    party = meta.get("from") if inbound else meta.get("to")
    if status == "ringing":
        return f"{word} from {party}" if inbound else f"{word} to {party}"
    if status == "answered":
        return f"{word}, answered"
    if status == "ended":
        duration = meta.get("duration")
        return f"{word}, {_clock(duration)}" if isinstance(duration, int) else f"{word}, ended"
    reason = REASON_TEXT.get(str(meta.get("missed_reason")), "no answer")
    text = f"Missed call ({reason})" if inbound else f"{word}, not answered ({reason})"
    if meta.get("voicemail") and isinstance(meta.get("recording_duration"), int):
        text += f", voicemail {_clock(meta['recording_duration'])}"
    elif meta.get("voicemail"):
        text += ", voicemail"
    return text


def _apply_to_meta(meta: dict[str, Any], call: CallEvent) -> dict[str, Any]:
    """The item's meta with one more event: the events list, and what follows from all of them."""
    events = [*meta.get("events", []), _record(call)][-MAX_EVENTS:]
    out = dict(meta) | {"events": events}
    status = call_status(events)
    talk = [
        e["duration"]
        for e in events
        if isinstance(e.get("duration"), int)
        and (e["event"] == "answered" or (e["event"] == "ended" and e.get("answered")))
    ]
    out["duration"] = max(talk) if talk else None
    ends = [e["duration"] for e in events if e["event"] == "ended" and "duration" in e]
    if ends:
        out["call_duration"] = max(ends)
    out["answered"] = status in ("answered", "ended")
    out["missed"] = status == "missed"
    out["missed_reason"] = _missed_reason(events) if status == "missed" else None
    if call.recording_url:
        out["recording_url"] = call.recording_url
        if call.recording_id:
            out["recording_id"] = call.recording_id
        if call.recording_duration is not None:
            out["recording_duration"] = call.recording_duration
        if call.voicemail:
            out["voicemail"] = True
    if call.comment:
        comment = {
            "text": call.comment,
            "source": call.step or "provider",
            "at": utcnow().isoformat(),
        }
        out["comments"] = [*meta.get("comments", []), comment][-MAX_EVENTS:]
    return out


# --- the transaction -----------------------------------------------------------------------


@dataclass(frozen=True)
class CallOutcome:
    result: IngestResult
    status: str | None = None
    ringing: bool = False  # the first ring of an inbound call: pop the caller card
    phone: str | None = None  # the caller's number as the card shows it
    closed: tuple[int, ...] = ()  # reminders this call marked done (their notices change)


def _close_reminders(conn: Connection, contact_id: int) -> list[Row[Any]]:
    """An answered call (either way) is the callback: the contact's open reminders are done."""
    now = utcnow()
    return list(
        conn.execute(
            update(REMINDERS)
            .where(REMINDERS.c.contact_id == contact_id, REMINDERS.c.status.in_(OPEN_STATUSES))
            .values(status="done", updated_at=now)
            .returning(*REMINDERS.c)
        )
    )


def _missed_callback(
    conn: Connection, contact_id: int, lead_id: int, event: InboundEvent
) -> tuple[list[Due], list[Row[Any]]]:
    """A missed inbound call: a callback reminder due at once. A pending one due later (the
    new lead's ordinary callback) is brought forward; an open one is otherwise kept as it is."""
    now = utcnow()
    moved = list(
        conn.execute(
            update(REMINDERS)
            .where(
                REMINDERS.c.contact_id == contact_id,
                REMINDERS.c.status == "pending",
                REMINDERS.c.due_at > now,
            )
            .values(due_at=now, kind="missed_call", updated_at=now)
            .returning(*REMINDERS.c)
        )
    )
    if moved:
        return [Due(int(r.id), r.due_at) for r in moved], moved
    still_open = conn.scalar(
        select(REMINDERS.c.id)
        .where(REMINDERS.c.contact_id == contact_id, REMINDERS.c.status.in_(OPEN_STATUSES))
        .limit(1)
    )
    if still_open is not None:
        return [], []
    lead = conn.execute(LEAD_ROW, {"lead_id": lead_id}).one()
    due = add_callback(conn, lead, replace(event, meta={"callback_now": True}), timedelta(0))
    if due is None:  # a hidden number: nobody to call back
        return [], []
    conn.execute(
        update(REMINDERS).where(REMINDERS.c.id == due.reminder_id).values(kind="missed_call")
    )
    return [due], []


def _with_files(rows: list[dict[str, Any]], event: InboundEvent) -> list[dict[str, Any]]:
    """The item's attachments plus the event's recordings not already among them."""
    known = {row.get("ref") for row in rows}
    return rows + [
        {"name": a.name, "content_type": a.content_type, "size": a.size, "url": None}
        | ({"source_url": a.url} if a.url else {})
        | ({"ref": a.ref} if a.ref else {})
        for a in event.attachments
        if a.ref not in known
    ]


def _dialled(call: CallEvent, region: str | None) -> str | None:
    if not call.line:
        return None
    return (normalize_phone(call.line, region) or call.line.strip())[:32] or None


def _apply_once(
    conn: Connection,
    event: InboundEvent,
    call: CallEvent,
    region: str | None,
    callback_within: timedelta | None,
) -> CallOutcome:
    receipt_id = claim_receipt(conn, event)
    if receipt_id is None:
        return CallOutcome(IngestResult(duplicate=True, item_id=None, contact_id=None))
    key = {"channel_type": event.channel_type, "channel": event.channel, "call_id": call.call_id}
    item = conn.execute(FIND_CALL, key).first()
    # The call's first event fixes its direction (a Twilio recording callback names none).
    inbound = (call.direction if item is None else item.direction) == "in"
    dialled = _dialled(call, region)
    if inbound and dialled:
        event = replace(event, meta={**event.meta, "dialled_number": dialled})
    now = utcnow()
    live: list[LiveEvent] = []
    contact_created = False
    if item is None:
        match = match_contact(conn, event.sender, region)
        contact_id, contact_created = match.contact_id, match.created
        conversation = find_or_open_conversation(conn, contact_id, event, contact_created)
        before = None
        meta: dict[str, Any] = {
            "call_id": call.call_id,
            "from": call.party if inbound else call.line,
            "to": call.line if inbound else call.party,
            "dialled_number": dialled if inbound else None,
        }
        meta = _apply_to_meta(meta, call)
        status = call_status(meta["events"])
        values = {
            "conversation_id": conversation.id,
            "contact_id": contact_id,
            "channel": event.channel,
            "channel_type": event.channel_type,
            "direction": call.direction,
            "kind": "call",
            "text": summary(call.direction, status, meta),
            "attachments": _with_files([], event),
            "status": status,
            "error": None,
            "external_id": call.call_id,
            "author_id": None,
            "meta": meta,
            "created_at": conversation.last_message_at,
            "updated_at": conversation.last_message_at,
        }
        row = conn.execute(INSERT_ITEM, values).one()
        live += [
            LiveEvent("message.created", item_to_dict(row)),
            LiveEvent("conversation.updated", conversation_to_dict(conversation)),
        ]
    else:
        contact_id, before = item.contact_id, item.status
        meta = _apply_to_meta(dict(item.meta or {}), call)
        status = call_status(meta["events"])
        row = conn.execute(
            update(ITEMS)
            .where(ITEMS.c.id == item.id)
            .values(
                status=status,
                text=summary(item.direction, status, meta),
                meta=meta,
                attachments=_with_files([dict(a) for a in item.attachments or []], event),
                updated_at=now,
            )
            .returning(*ITEMS.c)
        ).one()
        live.append(LiveEvent("message.updated", item_to_dict(row)))
    lead_id: int | None = None
    new_lead: Row[Any] | None = None
    dues: list[Due] = []
    changed: list[Row[Any]] = []
    closed: list[int] = []
    answered = status in ("answered", "ended")
    if inbound and (before is None or (status == "missed" and before != "missed")):
        # The first event of a call opens (or joins) the lead; so does a late miss, in case
        # the lead was closed meanwhile: a missed call is a new interest to call back.
        lead_id, new_lead = open_or_join_lead(conn, contact_id, event, row.id, contact_created)
        if new_lead is not None:
            live.append(LiveEvent("lead.created", lead_to_dict(new_lead)))
            if status == "ringing" and callback_within is not None:
                due = add_callback(conn, new_lead, event, callback_within)
                dues += [due] if due is not None else []
        if status == "missed":
            moved_dues, moved = _missed_callback(conn, contact_id, lead_id, event)
            dues += moved_dues
            changed += moved
    if answered and before not in ("answered", "ended"):
        done = _close_reminders(conn, contact_id)
        changed += done
        closed += [int(r.id) for r in done]
    conn.execute(
        COMPLETE_RECEIPT,
        {"receipt_id": receipt_id, "item": row.id, "contact": contact_id, "lead": lead_id},
    )
    live += [LiveEvent("reminder.updated", reminder_to_dict(r)) for r in changed]
    ringing = (
        inbound and call.event == "ringing" and status == "ringing" and before in (None, "ringing")
    )
    phones = event.sender.phones
    result = IngestResult(
        duplicate=False,
        item_id=row.id,
        contact_id=contact_id,
        conversation_id=row.conversation_id,
        lead_id=lead_id,
        lead_created=new_lead is not None,
        contact_created=contact_created,
        live=tuple(live),
        reminders=tuple(dues),
    )
    log.info("call_event", call_id=call.call_id, what=call.event, status=status, before=before)
    return CallOutcome(
        result,
        status=status,
        ringing=ringing,
        phone=(normalize_phone(phones[0], region) or phones[0]) if phones else None,
        closed=tuple(closed),
    )


async def apply_call(
    db: Database,
    event: InboundEvent,
    region: str | None,
    callback_within: timedelta | None = None,
) -> CallOutcome:
    """Apply one call event exactly once. The first ring of an inbound call adds a
    `call.ringing` live event with the caller card, read after the commit."""
    call = call_event_of(event)
    if call is None:
        raise ValueError(f"event {event.external_id!r} carries no {CALL_EVENT}")
    structlog.contextvars.bind_contextvars(channel=event.channel, event_id=event.external_id)
    outcome = await db.run_write_retrying(_apply_once, event, call, region, callback_within)
    result = outcome.result
    if not outcome.ringing or result.contact_id is None:
        return outcome
    async with db.read() as session:
        card = await caller_card(session, outcome.phone, region, contact_id=result.contact_id)
        item = await session.get(TimelineItem, result.item_id)
    ringing = LiveEvent(
        "call.ringing",
        {"call": item_to_dict(item) if item is not None else None, "card": card},
    )
    return replace(outcome, result=replace(result, live=(*result.live, ringing)))


# --- the caller card -----------------------------------------------------------------------


async def find_by_phone(session: AsyncSession, phone: str, region: str | None) -> Contact | None:
    """The (unmerged) contact with this phone, typed in any format."""
    owners = select(Identity.contact_id).where(phone_filter(phone, region))
    query = (
        select(Contact)
        .where(Contact.id.in_(owners), Contact.merged_into_id.is_(None))
        .order_by(Contact.id)
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def caller_card(
    session: AsyncSession,
    phone: str | None,
    region: str | None,
    *,
    contact_id: int | None = None,
    items: int = CARD_ITEMS,
) -> dict[str, Any]:
    """Who is calling: the contact, their open leads and reminders, and their last timeline
    items on every channel (newest first). `contact` is None for a number never seen."""
    shown = (normalize_phone(phone, region) or phone.strip()) if phone else None
    contact: Contact | None = None
    if contact_id is not None:
        contact = await session.get(Contact, contact_id)
        while contact is not None and contact.merged_into_id is not None:
            contact = await session.get(Contact, contact.merged_into_id)
    elif phone:
        contact = await find_by_phone(session, phone, region)
    card: dict[str, Any] = {
        "phone": shown,
        "known": contact is not None,
        "contact": None,
        "open_leads": [],
        "open_reminders": [],
        "last_items": [],
    }
    if contact is None:
        return card
    (card["contact"],) = await contacts_to_dicts(session, [contact])
    leads = await session.scalars(
        select(Lead).where(Lead.contact_id == contact.id, Lead.status == "open").order_by(Lead.id)
    )
    card["open_leads"] = [lead_to_dict(lead) for lead in leads]
    reminders = await session.scalars(
        select(Reminder)
        .where(Reminder.contact_id == contact.id, Reminder.status.in_(OPEN_STATUSES))
        .order_by(Reminder.due_at)
    )
    card["open_reminders"] = [reminder_to_dict(r) for r in reminders]
    last = await session.scalars(
        select(TimelineItem)
        .where(TimelineItem.contact_id == contact.id)
        .order_by(TimelineItem.created_at.desc(), TimelineItem.id.desc())
        .limit(items)
    )
    card["last_items"] = [item_to_dict(i) for i in last]
    return card


async def add_comment(
    db: Database, item_id: int, text: str, author_id: int
) -> dict[str, Any] | None:
    """An operator's comment on a call, kept in the item's meta["comments"]; the item as the
    API shows it, or None when there is no such call."""
    async with db.write() as session:
        item = await session.get(TimelineItem, item_id, with_for_update=True)
        if item is None or item.kind != "call":
            return None
        meta = dict(item.meta or {})
        comment = {"text": text, "author_id": author_id, "at": utcnow().isoformat()}
        meta["comments"] = [*meta.get("comments", []), comment][-MAX_EVENTS:]
        item.meta = meta
        item.updated_at = utcnow()
        await session.flush()
        return item_to_dict(item)
