"""GET /api/events: live events as server-sent events, fanned out from Redis to each browser.

Every hub process keeps one Redis pub/sub subscription to the live-event channel. A published
event is only a doorbell: the process then reads the Redis stream from the last id it saw, so
every event goes out with its stream id, in order, and a browser that reconnects with
`Last-Event-ID` gets exactly what it missed from the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp_sse import EventSourceResponse
from redis.exceptions import RedisError
from sqlalchemy import select

from hub.auth.tokens import user_for_token
from hub.auth.users import at_least
from hub.inbox.live import stream_key
from hub.models import Conversation, User
from hub.runtime import Runtime
from webhooks.api import current_user
from webhooks.context import RUNTIME
from webhooks.responses import error

log = structlog.get_logger(__name__)

PATH = "/api/events"
PING_SECONDS = web.AppKey("events_ping_seconds", float)  # keep-alive comment interval
RECHECK_SECONDS = web.AppKey("events_recheck_seconds", float)  # token re-validation interval
STREAM_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
EVERYONE, MANAGERS = "everyone", "managers"  # audiences that are not a conversation owner
QUEUE_SIZE = 1000  # a browser this far behind is cut off; it reconnects and replays
READ_BATCH = 500
# Events whose data names its owner in assignee_id; the rest go to managers (calls: everyone).
OWNED_BY_ASSIGNEE = (
    "conversation.updated",
    "lead.created",
    "lead.updated",
    "reminder.due",
    "reminder.updated",
)
RETRY_MS = 2000  # how soon EventSource reconnects after a drop


def parse_stream_id(value: str) -> tuple[int, int] | None:
    match = STREAM_ID.match(value)
    return (int(match[1]), int(match[2])) if match else None


def token_of(request: web.Request) -> str:
    """The bearer token: the header, or (EventSource cannot send headers) `?token=`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("token", "").strip()


@dataclass
class Event:
    """One stream entry, with who may see it (resolved once per process, not per browser)."""

    id: str
    type: str
    data: dict[str, Any]
    audience: str | int | None = None  # EVERYONE, MANAGERS, an owner's user id, or None: unassigned

    def for_user(self, user: User) -> dict[str, Any] | None:
        """The data this user may receive, or None. Operators see their own and unassigned
        conversations; a conversation taken out of their sight arrives reduced to its id and
        new assignee, so their list drops it."""
        if at_least(user, "manager") or self.audience == EVERYONE:
            return self.data
        if self.audience is None or self.audience == user.id:
            return self.data
        if self.type == "conversation.updated":
            return {k: self.data.get(k) for k in ("id", "assignee_id", "status")}
        return None


def decode_entry(entry_id: Any, fields: dict[Any, Any]) -> Event | None:
    raw = fields.get(b"event") or fields.get("event")
    ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    try:
        payload = json.loads(raw or b"")
        kind, data = payload["type"], payload["data"]
    except (TypeError, ValueError, KeyError):
        log.warning("live_entry_unreadable", id=ident)
        return None
    if not isinstance(kind, str) or not isinstance(data, dict):
        return None
    return Event(ident, kind, data)


async def resolve_audience(runtime: Runtime, events: list[Event]) -> None:
    """Who owns each event: a message's conversation's current assignee, the assignee_id of a
    conversation, lead or reminder; a ringing call is for everyone; anything else for managers."""
    conversation_ids = {
        int(e.data["conversation_id"])
        for e in events
        if e.type.startswith("message.") and isinstance(e.data.get("conversation_id"), int)
    }
    owners: dict[int, int | None] = {}
    if conversation_ids:
        async with runtime.db.read() as session:
            rows = await session.execute(
                select(Conversation.id, Conversation.assignee_id).where(
                    Conversation.id.in_(conversation_ids)
                )
            )
            owners = {row.id: row.assignee_id for row in rows}
    for event in events:
        if event.type == "call.ringing":
            event.audience = EVERYONE
        elif event.type.startswith("message."):
            cid = event.data.get("conversation_id")
            event.audience = owners.get(cid, MANAGERS) if isinstance(cid, int) else MANAGERS
        elif event.type in OWNED_BY_ASSIGNEE:
            owner = event.data.get("assignee_id")
            event.audience = owner if isinstance(owner, int) or owner is None else MANAGERS
        else:
            event.audience = MANAGERS


async def read_after(runtime: Runtime, after: str, count: int = READ_BATCH) -> list[Event]:
    """Stream entries newer than `after`, oldest first, with their audience."""
    key = stream_key(runtime.settings.redis_prefix)
    entries = await runtime.redis.xrange(key, min=f"({after}", max="+", count=count)
    events = [e for e in (decode_entry(i, f) for i, f in entries) if e is not None]
    await resolve_audience(runtime, events)
    return events


async def latest_id(runtime: Runtime) -> str:
    key = stream_key(runtime.settings.redis_prefix)
    last = await runtime.redis.xrevrange(key, count=1)
    if not last:
        return "0-0"
    entry_id = last[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def missed_too_much(runtime: Runtime, after: str) -> bool:
    """Whether entries after `after` may have been trimmed from the stream (MAXLEN) already: the
    stream was trimmed and its oldest entry is newer than what the browser saw."""
    key = stream_key(runtime.settings.redis_prefix)
    with contextlib.suppress(RedisError):  # no stream yet: nothing was trimmed
        info = await runtime.redis.xinfo_stream(key)
        first = info.get("first-entry")
        if not first or int(info.get("entries-added") or 0) <= int(info.get("length") or 0):
            return False
        first_id = first[0].decode() if isinstance(first[0], bytes) else str(first[0])
        return (parse_stream_id(after) or (0, 0)) < (parse_stream_id(first_id) or (0, 0))
    return False


@dataclass
class Fanout:
    """This process's one subscription; each open stream holds a queue in `listeners`."""

    runtime: Runtime
    listeners: set[asyncio.Queue[Event | None]] = field(default_factory=set)
    last_id: str = "0-0"
    task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        key = stream_key(self.runtime.settings.redis_prefix)
        backoff = 0.5
        while True:
            pubsub = self.runtime.redis.pubsub()
            try:
                await pubsub.subscribe(key)
                # Subscribed first, then the stream's end: nothing published in between is lost.
                if not self.ready.is_set():
                    self.last_id = await latest_id(self.runtime)
                    self.ready.set()
                await self._catch_up()  # after an outage: what was added meanwhile
                backoff = 0.5
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                    if message is not None:
                        await self._catch_up()
            except (RedisError, OSError) as exc:
                log.warning("live_subscription_lost", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    async def _catch_up(self) -> None:
        while True:
            events = await read_after(self.runtime, self.last_id)
            if not events:
                return
            self.last_id = events[-1].id
            for event in events:
                for queue in list(self.listeners):
                    try:
                        queue.put_nowait(event)
                    except asyncio.QueueFull:
                        self.listeners.discard(queue)
                        queue.get_nowait()  # room for the sentinel that ends that stream
                        queue.put_nowait(None)

    async def subscribe(self) -> tuple[asyncio.Queue[Event | None], str]:
        """A queue of every event after the returned stream id."""
        self.start()
        async with asyncio.timeout(5):
            await self.ready.wait()
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_SIZE)
        self.listeners.add(queue)
        return queue, self.last_id

    async def close(self) -> None:
        for queue in self.listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self.listeners.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


FANOUT = web.AppKey("events_fanout", Fanout)


async def send(stream: EventSourceResponse, event: Event, user: User) -> None:
    data = event.for_user(user)
    if data is not None:
        await stream.send(json.dumps(data, default=str), id=event.id, event=event.type)


async def still_valid(runtime: Runtime, token: str) -> bool:
    async with runtime.db.read() as session:
        return await user_for_token(session, token) is not None


async def events(request: web.Request) -> web.StreamResponse:
    """The live stream of one browser: replay after Last-Event-ID, then live events, with
    keep-alive pings; closed when the token is revoked or the process stops."""
    runtime = request.app[RUNTIME]
    user = current_user(request)
    resume = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if resume is not None and parse_stream_id(resume) is None:
        return error(400, "Last-Event-ID: not an event id this stream sent (like 1732530000000-0)")
    fanout = request.app[FANOUT]
    queue: asyncio.Queue[Event | None] | None = None
    try:
        queue, start = await fanout.subscribe()
        if resume is not None:
            gap = await missed_too_much(runtime, resume)
            replay = await read_after(runtime, resume, count=QUEUE_SIZE)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("live_stream_unavailable", error=str(exc))
        if queue is not None:
            fanout.listeners.discard(queue)
        return error(503, "live events are unavailable: Redis does not answer")
    stream = EventSourceResponse(ping_interval=request.app.get(PING_SECONDS, 15.0))
    token = token_of(request)
    try:
        await stream.prepare(request)
        closed = asyncio.create_task(stream.wait())
        if resume is None:
            # Carries the id the browser resumes from if it drops before any event arrives.
            await stream.send("{}", id=start, event="ready", retry=RETRY_MS)
            sent = parse_stream_id(start) or (0, 0)
        else:
            await stream.send("{}", event="ready", retry=RETRY_MS)
            if gap or len(replay) >= QUEUE_SIZE:  # the browser reloads its lists instead
                await stream.send("{}", event="resync")
            for event in replay:
                await send(stream, event, user)
            sent = parse_stream_id(replay[-1].id if replay else resume) or (0, 0)
        await relay(request, stream, closed, queue, user, token, sent)
    except (ConnectionResetError, TimeoutError):
        pass  # the browser went away or stalled; it reconnects with Last-Event-ID
    finally:
        fanout.listeners.discard(queue)
        if stream.prepared:
            stream.stop_streaming()
    return stream


async def relay(
    request: web.Request,
    stream: EventSourceResponse,
    closed: asyncio.Task[None],
    queue: asyncio.Queue[Event | None],
    user: User,
    token: str,
    sent: tuple[int, int],
) -> None:
    """Live events to the browser until it goes away, the process stops or the token is
    revoked (checked every RECHECK_SECONDS)."""
    recheck = request.app.get(RECHECK_SECONDS, 30.0)
    while not closed.done():
        get = asyncio.ensure_future(queue.get())
        await asyncio.wait({get, closed}, timeout=recheck, return_when=asyncio.FIRST_COMPLETED)
        if not get.done():
            get.cancel()
            if not closed.done() and not await still_valid(request.app[RUNTIME], token):
                await stream.send("{}", event="logout")
                return
            continue
        event = get.result()
        if event is None:
            return
        ident = parse_stream_id(event.id) or (0, 0)
        if ident <= sent:  # already sent by the replay
            continue
        sent = ident
        await send(stream, event, user)


def add_routes(app: web.Application) -> None:
    app[FANOUT] = Fanout(app[RUNTIME])
    app.router.add_get(PATH, events)

    async def close_fanout(app: web.Application) -> None:
        await app[FANOUT].close()

    app.on_shutdown.append(close_fanout)
