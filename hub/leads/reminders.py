"""Callback reminders: database rows (the source of truth) fired by deferred jobs.

A reminder fires at most once per due time: a conditional update on the row (still pending,
the due time the job was queued for, and due by now) decides which job run fires it, so a
re-enqueued job, a sweep or a second worker fires nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Connection, Row, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from hub.channels.base import InboundEvent
from hub.db import Database
from hub.inbox.live import LiveEvent
from hub.leads.leads import lead_to_dict
from hub.models import CONTACTS, IDENTITIES, LEADS, Lead, Reminder, User, _table, utcnow
from hub.notify.outbox import PlanCache, plan, supervisor_of
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = structlog.get_logger(__name__)
REMINDERS = _table(Reminder)
USERS = _table(User)
STATUSES = ("pending", "notified", "done", "cancelled")
OPEN_STATUSES = ("pending", "notified")
MAX_SNOOZE_MINUTES = 7 * 24 * 60
SNOOZE_UNIT = timedelta(minutes=1)  # what one "minute" of a snooze is (tests shorten it)
SWEEP_BATCH = 1000
# A job is queued (deferred to the due time) once its reminder is due within this window: at
# commit when it already is, else by the sweep (every 5 s), so Redis holds no far-off jobs.
LOOKAHEAD = timedelta(seconds=10)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReminderError(ValueError):
    """A request that cannot be applied; the message names what to fix."""

    def __init__(self, reason: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Due:
    """A reminder's job: its id and the due time it was queued for."""

    reminder_id: int
    due_at: datetime

    @property
    def job_id(self) -> str:
        return reminder_job_id(self.reminder_id, self.due_at)


def reminder_job_id(reminder_id: int, due_at: datetime) -> str:
    """From the reminder and its due time: a re-enqueue is harmless, a snooze is a new job."""
    micros = (due_at - EPOCH) // timedelta(microseconds=1)
    return f"reminder:{reminder_id}:{micros}"


def reminder_to_dict(reminder: Reminder | Row[Any]) -> dict[str, Any]:
    return {
        "id": reminder.id,
        "lead_id": reminder.lead_id,
        "contact_id": reminder.contact_id,
        "assignee_id": reminder.assignee_id,
        "due_at": reminder.due_at.isoformat(),
        "status": reminder.status,
        "kind": reminder.kind,
        "note": reminder.note,
        "notified_at": reminder.notified_at.isoformat() if reminder.notified_at else None,
        "escalated_at": reminder.escalated_at.isoformat() if reminder.escalated_at else None,
        "created_at": reminder.created_at.isoformat(),
    }


async def enqueue_dues(runtime: Runtime, dues: Sequence[Due]) -> None:
    """After commit: one deferred fire_reminder job per due time. A failure only logs, since
    the worker's sweep queues whatever is due and unfired."""
    horizon = utcnow() + LOOKAHEAD
    for due in dues:
        if due.due_at > horizon:
            continue  # the sweep queues it when its time comes near
        await runtime.enqueue_committed(
            "fire_reminder",
            due.reminder_id,
            due.due_at.isoformat(),
            job_id=due.job_id,
            defer_until=due.due_at,
        )


# --- the automatic callback, inside the ingest transaction ----------------------------------


# Built once: these run inside every ingest that opens a lead (see hub/sql.py for why).
_LOAD = (
    select(func.count(REMINDERS.c.id))
    .where(REMINDERS.c.assignee_id == USERS.c.id, REMINDERS.c.status.in_(OPEN_STATUSES))
    .scalar_subquery()
)
LEAST_LOADED_OPERATOR = (
    select(USERS.c.id)
    .where(USERS.c.role == "operator", USERS.c.active.is_(True))
    .order_by(_LOAD, USERS.c.id)
    .limit(1)
)
PHONE_OF = (
    select(IDENTITIES.c.id)
    .where(
        IDENTITIES.c.contact_id == bindparam("contact_id"),
        IDENTITIES.c.kind == "phone",
        IDENTITIES.c.valid.is_(True),
    )
    .limit(1)
)
INSERT_REMINDER = insert(REMINDERS).returning(REMINDERS.c.id)


def pick_assignee(conn: Connection, lead_assignee_id: int | None) -> int | None:
    """The lead's assignee, else the active operator with the fewest open reminders (ties: the
    lowest id); None when there is no operator."""
    if lead_assignee_id is not None:
        return lead_assignee_id
    return conn.scalar(LEAST_LOADED_OPERATOR)


def has_phone(conn: Connection, contact_id: int) -> bool:
    return conn.scalar(PHONE_OF, {"contact_id": contact_id}) is not None


def add_callback(
    conn: Connection, lead: Row[Any], event: InboundEvent, callback_within: timedelta
) -> Due | None:
    """A new lead whose contact has a phone gets a callback reminder (a missed call, flagged
    `callback_now` in the event's meta, at once). None when there is no phone to call."""
    if not has_phone(conn, lead.contact_id):
        return None
    now = utcnow()
    due_at = now if event.meta.get("callback_now") else now + callback_within
    values = {
        "lead_id": lead.id,
        "contact_id": lead.contact_id,
        "assignee_id": pick_assignee(conn, lead.assignee_id),
        "due_at": due_at,
        "status": "pending",
        "kind": "missed_call" if event.meta.get("callback_now") else "callback",
        "note": None,
        "created_at": now,
        "updated_at": now,
    }
    reminder_id = conn.execute(INSERT_REMINDER, values).scalar_one()
    return Due(int(reminder_id), due_at)


# --- firing and sweeping ---------------------------------------------------------------------


EVENT_CHUNK = 500  # ids per IN (...): older SQLite builds allow only 999 variables


async def _due_events(
    session: AsyncSession, reminders: Sequence[Reminder | Row[Any]], **extra: Any
) -> list[LiveEvent]:
    """reminder.due for each: the reminder with what the manager needs to call (contact,
    lead), loaded with one query per table and chunk, not per reminder."""
    events: list[LiveEvent] = []
    for start in range(0, len(reminders), EVENT_CHUNK):
        chunk = reminders[start : start + EVENT_CHUNK]
        events += await _due_events_of(session, chunk, **extra)
    return events


async def _due_events_of(
    session: AsyncSession, reminders: Sequence[Reminder | Row[Any]], **extra: Any
) -> list[LiveEvent]:
    contact_ids = sorted({r.contact_id for r in reminders})
    lead_ids = sorted({r.lead_id for r in reminders})
    names: dict[int, str | None] = {
        row.id: row.name
        for row in await session.execute(
            select(CONTACTS.c.id, CONTACTS.c.name).where(CONTACTS.c.id.in_(contact_ids))
        )
    }
    phones: dict[int, list[str]] = {}
    for contact_id, value in await session.execute(
        select(IDENTITIES.c.contact_id, IDENTITIES.c.value)
        .where(IDENTITIES.c.contact_id.in_(contact_ids), IDENTITIES.c.kind == "phone")
        .order_by(IDENTITIES.c.id)
    ):
        phones.setdefault(contact_id, []).append(value)
    leads = {
        row.id: row
        for row in await session.execute(select(*LEADS.c).where(LEADS.c.id.in_(lead_ids)))
    }
    events = []
    for reminder in reminders:
        body = reminder_to_dict(reminder)
        if reminder.contact_id in names:
            body["contact"] = {
                "id": reminder.contact_id,
                "name": names[reminder.contact_id],
                "phones": phones.get(reminder.contact_id, []),
            }
        lead = leads.get(reminder.lead_id)
        if lead is not None:
            body["lead"] = lead_to_dict(lead)
        events.append(LiveEvent("reminder.due", body | extra))
    return events


@dataclass(frozen=True)
class FireOutcome:
    fired: bool  # this job's own reminder fired now
    live: tuple[LiveEvent, ...] = ()
    wait: float | None = None  # seconds until due, when the job ran early (clock skew)
    notifications: tuple[int, ...] = ()  # outbox rows to send, committed with the firing
    count: int = 0  # reminders fired, this one and every other one due by now


FIRE_BATCH = 1000  # reminders one job fires at most, oldest due first


def _fire_due(
    conn: Connection, reminder_id: int, due_at: datetime, settings: Settings | None
) -> tuple[list[Row[Any]], list[int]] | float:
    """In one transaction: the conditional update, and the outbox rows of what it fired. The
    seconds to wait instead, when this job's own reminder is not due yet."""
    now = utcnow()
    mine = conn.execute(
        select(REMINDERS.c.status, REMINDERS.c.due_at).where(REMINDERS.c.id == reminder_id)
    ).first()
    if mine is not None and mine.status == "pending" and mine.due_at == due_at > now:
        return (due_at - now).total_seconds()
    own = and_(REMINDERS.c.id == reminder_id, REMINDERS.c.due_at == due_at)
    rows = conn.execute(
        update(REMINDERS)
        .where(
            REMINDERS.c.status == "pending",
            REMINDERS.c.due_at <= now,
            or_(own, REMINDERS.c.id.in_(_due_by(now, lock=True).scalar_subquery())),
        )
        .values(status="notified", notified_at=now, updated_at=now)
        .returning(*REMINDERS.c)
    ).all()
    outbox: list[int] = []
    if settings is not None:
        cache = PlanCache()
        for row in rows:
            outbox += plan(conn, settings, row, "due", cache)
    return list(rows), outbox


def _due_by(now: datetime, lock: bool = False) -> Any:
    """Pending reminders due by `now`, oldest first. With `lock` (on PostgreSQL), rows another
    firing job has locked are skipped rather than waited for: concurrent jobs split a burst
    instead of queueing behind each other (SQLite has one writer and ignores this)."""
    query = (
        select(REMINDERS.c.id)
        .where(REMINDERS.c.status == "pending", REMINDERS.c.due_at <= now)
        .order_by(REMINDERS.c.due_at)
        .limit(FIRE_BATCH)
    )
    return query.with_for_update(skip_locked=True) if lock else query


async def fire(
    db: Database, reminder_id: int, due_at: datetime, settings: Settings | None = None
) -> FireOutcome:
    """Fire the reminder for this due time, and with it every other reminder already due (10,000
    due in the same second go out in a few transactions, not 10,000), unless someone else did,
    or it was done, cancelled or snoozed meanwhile. The conditional update (still pending, due
    by now; this job's own one at the due time it was queued for) is the only decision point,
    so a duplicate job, a sweep or a second worker fires nothing twice. The notifications (with
    `settings`) are written to the outbox in the same transaction."""
    now = utcnow()
    async with db.read() as session:  # most jobs of a burst find their work done: no write
        mine = (
            await session.execute(
                select(REMINDERS.c.status, REMINDERS.c.due_at).where(REMINDERS.c.id == reminder_id)
            )
        ).first()
        mine_due = mine is not None and mine.status == "pending" and mine.due_at <= now
        waiting = mine is not None and mine.status == "pending" and mine.due_at == due_at
        nothing = not mine_due and not waiting
        if nothing and await session.scalar(_due_by(now).limit(1)) is None:
            return FireOutcome(False)
    done = await db.run_write_retrying(_fire_due, reminder_id, due_at, settings)
    if isinstance(done, float):
        return FireOutcome(False, wait=done)
    rows, outbox = done
    if not rows:
        return FireOutcome(False)
    try:  # committed: what the live events show; a failure here must not lose the outbox
        async with db.read() as session:
            events = await _due_events(session, rows)
    except Exception:
        log.exception("due_events_failed", reminder_id=reminder_id, count=len(rows))
        events = []
    fired = any(r.id == reminder_id for r in rows)
    return FireOutcome(fired, tuple(events), notifications=tuple(outbox), count=len(rows))


async def due_soon(db: Database, horizon: timedelta) -> list[Due]:
    """Pending reminders due by now + horizon (their jobs are queued again, deferred to the due
    time: a lost job costs nothing when it is found before its time)."""
    async with db.read() as session:
        rows = await session.execute(
            select(REMINDERS.c.id, REMINDERS.c.due_at)
            .where(REMINDERS.c.status == "pending", REMINDERS.c.due_at <= utcnow() + horizon)
            .order_by(REMINDERS.c.due_at)
            .limit(SWEEP_BATCH)
        )
        return [Due(int(r.id), r.due_at) for r in rows]


def _supervisor(session: Session, assignee_id: int | None) -> int | None:
    return supervisor_of(session.connection(), assignee_id)


def _plan(session: Session, settings: Settings, reminder: Any, kind: str) -> list[int]:
    return plan(session.connection(), settings, reminder, kind)


@dataclass(frozen=True)
class Escalations:
    live: tuple[LiveEvent, ...] = ()
    notifications: tuple[int, ...] = ()


async def escalate_overdue(
    db: Database, escalate_after: timedelta, settings: Settings | None = None
) -> Escalations:
    """Notified reminders still not done `escalate_after` past due: marked escalated, once (a
    conditional update), announced with the supervisor to tell, and (with `settings`) the
    supervisor's notification written to the outbox in the same transaction."""
    now = utcnow()
    events: list[LiveEvent] = []
    outbox: list[int] = []
    async with db.read() as session:
        ids = list(
            await session.scalars(
                select(REMINDERS.c.id)
                .where(
                    REMINDERS.c.status == "notified",
                    REMINDERS.c.due_at <= now - escalate_after,
                    REMINDERS.c.escalated_at.is_(None),
                )
                .order_by(REMINDERS.c.due_at)
                .limit(SWEEP_BATCH)
            )
        )
    for reminder_id in ids:
        async with db.write() as session:
            row = (
                await session.execute(
                    update(REMINDERS)
                    .where(
                        REMINDERS.c.id == reminder_id,
                        REMINDERS.c.status == "notified",
                        REMINDERS.c.escalated_at.is_(None),
                    )
                    .values(escalated_at=now, updated_at=now)
                    .returning(*REMINDERS.c)
                )
            ).first()
            if row is None:
                continue
            supervisor = await session.run_sync(_supervisor, row.assignee_id)
            events += await _due_events(session, [row], escalated=True, supervisor_id=supervisor)
            if settings is not None:
                outbox += await session.run_sync(_plan, settings, row, "escalation")
    return Escalations(tuple(events), tuple(outbox))


# --- operator actions ---------------------------------------------------------------------------


async def close_for_contact(session: AsyncSession, contact_id: int) -> int:
    """Answering the contact marks their open reminders done; the number closed."""
    now = utcnow()
    result = await session.execute(
        update(REMINDERS)
        .where(REMINDERS.c.contact_id == contact_id, REMINDERS.c.status.in_(OPEN_STATUSES))
        .values(status="done", updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def parse_due_at(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ReminderError("due_at: required, an ISO 8601 time with a timezone", "due_at")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReminderError("due_at: not an ISO 8601 time", "due_at") from None
    if parsed.tzinfo is None:
        raise ReminderError("due_at: give a timezone (e.g. Z or +05:00)", "due_at")
    return parsed.astimezone(UTC)


async def _check_assignee(session: AsyncSession, assignee_id: Any) -> int | None:
    if assignee_id is None:
        return None
    if not isinstance(assignee_id, int) or isinstance(assignee_id, bool) or assignee_id < 1:
        raise ReminderError("assignee_id: must be a user id (an integer)", "assignee_id")
    user = await session.get(User, assignee_id)
    if user is None or not user.active:
        raise ReminderError(f"assignee_id: no active user {assignee_id}", "assignee_id")
    return assignee_id


async def create_reminder(session: AsyncSession, data: dict[str, Any]) -> Reminder:
    """POST /api/reminders: a reminder on a lead, due when asked."""
    lead_id = data.get("lead_id")
    if not isinstance(lead_id, int) or isinstance(lead_id, bool) or lead_id < 1:
        raise ReminderError("lead_id: required, a lead id (an integer)", "lead_id")
    due_at = parse_due_at(data.get("due_at"))
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise ReminderError("note: must be a string", "note")
    if note is not None and len(note) > 2000:
        raise ReminderError("note: longer than 2000 characters", "note")
    assignee_id = await _check_assignee(session, data.get("assignee_id"))
    lead = await session.get(Lead, lead_id)
    if lead is None:
        raise ReminderError(f"lead {lead_id} not found", "lead_id", status=404)
    now = utcnow()
    reminder = Reminder(
        lead_id=lead.id,
        contact_id=lead.contact_id,
        assignee_id=assignee_id if assignee_id is not None else lead.assignee_id,
        due_at=due_at,
        status="pending",
        note=note or None,
        kind="manual",
        created_at=now,
        updated_at=now,
    )
    session.add(reminder)
    await session.flush()
    return reminder


async def load_reminder(session: AsyncSession, reminder_id: int) -> Reminder:
    reminder = await session.get(Reminder, reminder_id, with_for_update=True)
    if reminder is None:
        raise ReminderError(f"reminder {reminder_id} not found", status=404)
    return reminder


async def _close(
    session: AsyncSession, reminder_id: int, status: str, refused_from: str, reason: str
) -> Reminder:
    """Done or cancelled, repeatable; the other final state refuses with 409."""
    reminder = await load_reminder(session, reminder_id)
    if reminder.status == refused_from:
        raise ReminderError(f"reminder {reminder_id} {reason}", "status", status=409)
    if reminder.status != status:
        reminder.status = status
        reminder.updated_at = utcnow()
        await session.flush()
    return reminder


async def mark_done(session: AsyncSession, reminder_id: int) -> Reminder:
    return await _close(session, reminder_id, "done", "cancelled", "is cancelled")


async def cancel(session: AsyncSession, reminder_id: int) -> Reminder:
    return await _close(session, reminder_id, "cancelled", "done", "is already done")


def parse_minutes(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ReminderError("minutes: required, an integer", "minutes")
    if not 1 <= value <= MAX_SNOOZE_MINUTES:
        raise ReminderError(f"minutes: from 1 to {MAX_SNOOZE_MINUTES}", "minutes")
    return value


async def snooze(session: AsyncSession, reminder_id: int, minutes: int) -> Reminder:
    """Due again `minutes` from now, pending: a new due time, so a new job."""
    reminder = await load_reminder(session, reminder_id)
    if reminder.status in ("done", "cancelled"):
        raise ReminderError(f"reminder {reminder_id} is {reminder.status}", "status", status=409)
    now = utcnow()
    reminder.due_at = now + minutes * SNOOZE_UNIT
    reminder.status = "pending"
    reminder.notified_at = None
    reminder.escalated_at = None
    reminder.updated_at = now
    await session.flush()
    return reminder


def list_query(status: str | None, assignee: int | None, unassigned: bool) -> Any:
    query = select(Reminder)
    conditions = []
    if status:
        conditions.append(Reminder.status == status)
    if unassigned:
        conditions.append(Reminder.assignee_id.is_(None))
    elif assignee is not None:
        conditions.append(Reminder.assignee_id == assignee)
    return query.where(and_(*conditions)) if conditions else query


def dues(reminders: Sequence[Reminder]) -> list[Due]:
    return [Due(r.id, r.due_at) for r in reminders if r.status == "pending"]
