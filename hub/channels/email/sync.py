"""Reading a mailbox into the hub: new mail by UID after the cursor kept in the database, each
committed (thread found, contact, conversation, lead) before it is flagged \\Seen and before the
cursor moves past it. A mail that cannot be parsed is kept raw with the reason and skipped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from hub.channels.base import InboundEvent
from hub.channels.email.channel import Email
from hub.channels.email.parsing import MailError, ParsedMail, dedupe_key, parse_mail
from hub.channels.email.tables import MAILBOXES, REJECTED
from hub.channels.email.threads import MailKeys, find_thread, record_message
from hub.channels.email.transport import FETCH_CHUNK, Mailbox
from hub.db import Database
from hub.inbox.attachments import fetch_item_attachments
from hub.inbox.ingest import IngestResult, ingest_in_transaction
from hub.leads.acknowledge import acknowledgement
from hub.leads.pipelines import with_pipeline
from hub.metrics import INBOUND_EVENTS
from hub.models import MailboxState, RejectedMail, utcnow
from hub.settings import Settings
from hub.sql import insert_ignore

log = structlog.get_logger(__name__)

MAX_MAIL_BYTES = 50 * 1024 * 1024  # larger mails are set aside unread

# Called once per committed chunk with what it stored: live events, reminders, deliveries.
AfterCommit = Callable[[Sequence[IngestResult]], Awaitable[None]]


@dataclass
class SyncOutcome:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    resynced: bool = False
    results: list[IngestResult] = field(default_factory=list)


@dataclass(frozen=True)
class Cursor:
    uidvalidity: int | None
    last_uid: int


async def load_cursor(db: Database, channel: Email) -> Cursor:
    async with db.read() as session:
        row = (
            await session.execute(
                select(MailboxState.uidvalidity, MailboxState.last_uid).where(
                    MailboxState.channel == channel.name
                )
            )
        ).first()
    return Cursor(None, 0) if row is None else Cursor(row.uidvalidity, int(row.last_uid))


def _ensure_state(conn: Connection, channel: str, folder: str) -> None:
    insert_ignore(
        conn,
        MAILBOXES,
        {
            "channel": channel,
            "folder": folder,
            "uidvalidity": None,
            "last_uid": 0,
            "failures": 0,
            "updated_at": utcnow(),
        },
        ["channel"],
    )


def _save_cursor(conn: Connection, channel: str, folder: str, uidvalidity: int, uid: int) -> None:
    _ensure_state(conn, channel, folder)
    now = utcnow()
    conn.execute(
        update(MAILBOXES)
        .where(MAILBOXES.c.channel == channel)
        .values(
            folder=folder,
            uidvalidity=uidvalidity,
            last_uid=uid,
            last_ok_at=now,
            error=None,
            failing_since=None,
            failures=0,
            updated_at=now,
        )
    )


def _record_failure(conn: Connection, channel: str, folder: str, reason: str) -> int:
    _ensure_state(conn, channel, folder)
    now = utcnow()
    conn.execute(
        update(MAILBOXES)
        .where(MAILBOXES.c.channel == channel)
        .values(
            error=reason[:500],
            failing_since=func.coalesce(MAILBOXES.c.failing_since, now),
            failures=MAILBOXES.c.failures + 1,
            updated_at=now,
        )
    )
    failures = conn.scalar(select(MAILBOXES.c.failures).where(MAILBOXES.c.channel == channel))
    return int(failures or 1)


def _record_ok(conn: Connection, channel: str, folder: str) -> None:
    _ensure_state(conn, channel, folder)
    now = utcnow()
    conn.execute(
        update(MAILBOXES)
        .where(MAILBOXES.c.channel == channel)
        .values(error=None, failing_since=None, failures=0, last_ok_at=now, updated_at=now)
    )


async def record_failure(db: Database, channel: Email, reason: str) -> int:
    """The mailbox could not be read: the reason goes on /healthz. Returns the failures in a row."""
    return await db.run_write_retrying(_record_failure, channel.name, channel.imap.folder, reason)


async def record_ok(db: Database, channel: Email) -> None:
    await db.run_write_retrying(_record_ok, channel.name, channel.imap.folder)


def _reject(
    conn: Connection, channel: str, uidvalidity: int, uid: int, error: str, raw: bytes
) -> None:
    insert_ignore(
        conn,
        REJECTED,
        {
            "channel": channel,
            "uidvalidity": uidvalidity,
            "uid": uid,
            "error": error[:1000],
            "raw": raw,
            "created_at": utcnow(),
        },
        ["channel", "uidvalidity", "uid"],
    )


def is_outage(exc: Exception) -> bool:
    """The database or the network is down (try again later), not a mail it cannot take."""
    if isinstance(exc, OSError | ConnectionError | asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError)
    return False


def _store_mail(
    conn: Connection,
    event: InboundEvent,
    keys: MailKeys,
    ours: str,
    region: str | None,
    callback_within: timedelta | None,
    acknowledge: str | None = None,
) -> IngestResult:
    """Thread, ingest and remember the Message-ID in one transaction."""
    thread_key, how = find_thread(conn, keys, ours)
    event = replace(event, thread_key=thread_key, meta={**event.meta, "thread": how})
    result = ingest_in_transaction(conn, event, region, callback_within, acknowledge)
    if keys.message_id:
        record_message(
            conn,
            channel=keys.channel,
            message_id=keys.message_id,
            thread_key=thread_key,
            direction="in",
            party=keys.sender,
            subject=keys.subject,
            item_id=result.item_id,
        )
    return result


def mail_keys(channel: Email, mail: ParsedMail, raw: bytes) -> MailKeys:
    return MailKeys(
        channel=channel.name,
        message_id=mail.message_id,
        sender=mail.bounced_recipient or mail.sender,
        subject=mail.subject,
        referenced=(*mail.in_reply_to, *reversed(mail.references)),
        recipients=(*mail.delivered_to, *mail.to, *mail.cc),
        seed=dedupe_key(mail.message_id, mail.sender, raw),
    )


@dataclass(frozen=True)
class Ingest:
    """What storing needs besides the mail: the hub's settings for ingest and the data dir."""

    region: str | None
    callback_within: timedelta | None
    data_dir: Path
    # With the settings: the lead's pipeline and the channel's acknowledgement, as for webhooks.
    settings: Settings | None = None


async def _store_one(
    db: Database, channel: Email, ingest: Ingest, event: InboundEvent, keys: MailKeys
) -> IngestResult:
    callback = ingest.callback_within if event.opens_lead else None
    acknowledge = None
    if ingest.settings is not None:
        event = with_pipeline(event, ingest.settings)
        acknowledge = acknowledgement(ingest.settings, {channel.name: channel}, event)
    return await db.run_write_retrying(
        _store_mail, event, keys, channel.address, ingest.region, callback, acknowledge
    )


async def sync_mailbox(
    db: Database,
    channel: Email,
    mailbox: Mailbox,
    ingest: Ingest,
    after_commit: AfterCommit | None = None,
    keep_going: Callable[[], Awaitable[bool]] | None = None,
) -> SyncOutcome:
    """Read everything new in the folder (connected `mailbox`), in chunks: each chunk is
    committed, then flagged \\Seen, then the cursor moves past it. `keep_going` is asked
    after each chunk (the poller renews its lock there) and False stops the pass."""
    outcome = SyncOutcome()
    cursor = await load_cursor(db, channel)
    uidvalidity, _uidnext = await asyncio.to_thread(mailbox.select)
    last_uid = cursor.last_uid
    if cursor.uidvalidity is not None and cursor.uidvalidity != uidvalidity:
        # The server renumbered the folder: read it all again; dedupe keys make that harmless.
        log.warning(
            "mailbox_uidvalidity_changed",
            channel=channel.name,
            before=cursor.uidvalidity,
            now=uidvalidity,
        )
        last_uid, outcome.resynced = 0, True
    uids = await asyncio.to_thread(mailbox.uids_after, last_uid)
    chunks = [uids[start : start + FETCH_CHUNK] for start in range(0, len(uids), FETCH_CHUNK)]
    # The next chunk is read from the server while this one is stored; the connection is
    # used by one command at a time all the same (\Seen waits for that read to finish).
    reading = _read_task(mailbox, chunks[0]) if chunks else None
    try:
        for index, chunk in enumerate(chunks):
            assert reading is not None
            sizes, raws = await reading
            reading = _read_task(mailbox, chunks[index + 1]) if index + 1 < len(chunks) else None
            done = await _store_chunk(
                db, channel, ingest, uidvalidity, chunk, sizes, raws, outcome, after_commit
            )
            if reading is not None:
                await asyncio.wait([reading])
            await asyncio.to_thread(mailbox.mark_seen, done)
            await db.run_write_retrying(
                _save_cursor, channel.name, channel.imap.folder, uidvalidity, chunk[-1]
            )
            if keep_going is not None and not await keep_going():
                break
    finally:
        if reading is not None:  # never close the connection under a read still running
            with contextlib.suppress(Exception):
                await reading
    if not uids and cursor.uidvalidity != uidvalidity:
        await db.run_write_retrying(
            _save_cursor, channel.name, channel.imap.folder, uidvalidity, last_uid
        )
    return outcome


def _read(mailbox: Mailbox, uids: Sequence[int]) -> tuple[dict[int, int], dict[int, bytes]]:
    """Sizes first, so a huge mail is set aside without downloading it; then the mails."""
    sizes = mailbox.sizes(uids)
    wanted = [uid for uid in uids if sizes.get(uid, 0) <= MAX_MAIL_BYTES]
    return sizes, (mailbox.fetch(wanted) if wanted else {})


def _read_task(
    mailbox: Mailbox, uids: Sequence[int]
) -> asyncio.Task[tuple[dict[int, int], dict[int, bytes]]]:
    return asyncio.create_task(asyncio.to_thread(_read, mailbox, uids))


async def _store_chunk(
    db: Database,
    channel: Email,
    ingest: Ingest,
    uidvalidity: int,
    uids: Sequence[int],
    sizes: dict[int, int],
    raws: dict[int, bytes],
    outcome: SyncOutcome,
    after_commit: AfterCommit | None,
) -> list[int]:
    """Commit one chunk; the UIDs to flag \\Seen (all but those set aside)."""
    too_large = [uid for uid in uids if sizes.get(uid, 0) > MAX_MAIL_BYTES]
    for uid in too_large:
        reason = f"mail too large to read ({sizes[uid] / 1048576:.0f} MB)"
        await db.run_write_retrying(_reject, channel.name, uidvalidity, uid, reason, b"")
        outcome.rejected += 1
    wanted = [uid for uid in uids if uid not in too_large]
    outcome.fetched += len(raws)
    pending: list[tuple[InboundEvent, MailKeys]] = []
    done: list[int] = []
    for uid in wanted:
        raw = raws.get(uid)
        if raw is None:  # expunged between SEARCH and FETCH
            continue
        try:
            mail = parse_mail(raw)
        except (MailError, ValueError, LookupError, UnicodeError, IndexError) as exc:
            reason = exc.args[0] if isinstance(exc, MailError) else f"{type(exc).__name__}: {exc}"
            log.warning("mail_rejected", channel=channel.name, uid=uid, error=reason)
            await db.run_write_retrying(_reject, channel.name, uidvalidity, uid, reason, raw)
            INBOUND_EVENTS.labels(channel.name, channel.type, "rejected").inc()
            outcome.rejected += 1
            continue
        if channel.is_own(mail.sender):
            outcome.ignored += 1
            done.append(uid)
            continue
        parts = await asyncio.to_thread(channel.keep_parts, mail) if mail.parts else []
        pending.append((channel.mail_event(mail, raw, parts, uid), mail_keys(channel, mail, raw)))
        done.append(uid)
    if db.is_sqlite:  # one writer: concurrent jobs share commits (GroupCommit), in order
        results: list[IngestResult | BaseException] = list(
            await asyncio.gather(
                *(_store_one(db, channel, ingest, event, keys) for event, keys in pending),
                return_exceptions=True,
            )
        )
    else:  # in order, so a reply in the same chunk finds the mail it answers
        results = []
        for event, keys in pending:
            try:
                results.append(await _store_one(db, channel, ingest, event, keys))
            except Exception as exc:
                results.append(exc)
    committed: list[IngestResult] = []
    for (event, _keys), result in zip(pending, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception) or is_outage(result):
                raise result  # the database is down: nothing moves, the chunk is read again
            uid = int(event.meta.get("uid", 0))
            reason = f"could not be stored: {type(result).__name__}: {result}"[:500]
            log.error("mail_not_stored", channel=channel.name, uid=uid, error=reason)
            raw = raws.get(uid, b"")
            await db.run_write_retrying(_reject, channel.name, uidvalidity, uid, reason, raw)
            outcome.rejected += 1
            continue
        outcome.results.append(result)
        kind = "duplicate" if result.duplicate else "stored"
        INBOUND_EVENTS.labels(channel.name, channel.type, kind).inc()
        if event.attachments and result.item_id is not None:
            # Also for a mail read again after a crash: files not yet kept are kept now.
            await fetch_item_attachments(
                db, {channel.name: channel}, ingest.data_dir, result.item_id, None
            )
        if result.duplicate:
            outcome.duplicates += 1
            continue
        outcome.stored += 1
        committed.append(result)
    if after_commit is not None and committed:
        await after_commit(committed)
    return done


async def mailbox_health(db: Database, channels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each polled mailbox's state for /healthz: ok or the reason it fails, since when."""
    if not channels:
        return {}
    try:
        return await _mailbox_health(db, channels)
    except Exception as exc:  # /healthz answers even when this read fails
        reason = f"state unreadable: {type(exc).__name__}"
        return {name: {"status": "unknown", "error": reason} for name in channels}


async def _mailbox_health(db: Database, channels: Sequence[str]) -> dict[str, dict[str, Any]]:
    async with db.read() as session:
        states = {
            row.channel: row
            for row in (
                await session.execute(
                    select(MailboxState).where(MailboxState.channel.in_(channels))
                )
            ).scalars()
        }
        counted = await session.execute(
            select(RejectedMail.channel, func.count())
            .where(RejectedMail.channel.in_(channels))
            .group_by(RejectedMail.channel)
        )
        rejected = {str(name): int(n) for name, n in counted}
    out: dict[str, dict[str, Any]] = {}
    for name in channels:
        state = states.get(name)

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        if state is None:
            out[name] = {"status": "starting", "rejected_mails": rejected.get(name, 0)}
            continue
        out[name] = {
            "status": "failing" if state.error else "ok",
            "error": state.error,
            "failing_since": iso(state.failing_since),
            "last_ok_at": iso(state.last_ok_at),
            "uidvalidity": state.uidvalidity,
            "last_uid": state.last_uid,
            "rejected_mails": rejected.get(name, 0),
        }
    return out
