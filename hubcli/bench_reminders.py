"""`hub bench --target reminders`: callback reminders under load, against a real `hub up`.

Two measurements, one hub (web + worker + Redis, SQLite unless --database-url):

1. Burst: `--reminders` reminders (default 10,000) are written due in the same second, a few
   seconds ahead. The clock stops when every one is fired and announced (its reminder.due event
   read from the hub's live stream). Reported: lateness after the due time (committed p50;
   announced p50, p99 and max, the max being the total time), and how many reminder.due events
   each reminder got (must be exactly one).
2. Speed to lead: with `callback_within = "0s"`, `--lead-rate` form posts a second (default 50)
   for `--lead-seconds` (default 20). Each lead's callback reminder is due at once; its
   reminder.due live event and its Telegram notification (to an operator linked to a local fake
   Bot API) are timed from the moment the form was posted. Reported: p50/p99/max of both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from hub.auth.passwords import hash_password
from hub.db import Database
from hub.embedded_redis import embedded_url
from hub.models import (
    CONTACTS,
    LEADS,
    Identity,
    NotificationPrefs,
    Reminder,
    User,
    _table,
    utcnow,
)
from hubcli.bench import (
    FORM_ID,
    TELEGRAM_CHANNEL,
    TELEGRAM_TOKEN,
    BenchError,
    forget_redis_keys,
    free_port,
    hub_env,
    migrate,
    percentile,
    running,
    start_server,
    wait_healthy,
    workdir_prefix,
)
from hubcli.bench import _redact as redact

REMINDERS = _table(Reminder)
IDENTITIES = _table(Identity)
BURST_LEAD_SECONDS = 8.0  # the burst is due this long after it is written
SETTLE_TIMEOUT = 120.0
OPERATOR_CHAT_BASE = 700_000_000  # plus a random number: a reused database keeps old links
GOAL_BURST_TOTAL_S = 5.0
GOAL_LEAD_P99_S = 1.0
INSERT_BATCH = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--target reminders")
    group.add_argument(
        "--reminders",
        type=int,
        default=10_000,
        help="reminders due in the same second in the burst (default 10000)",
    )
    group.add_argument("--lead-rate", type=int, default=50, help="form leads a second (default 50)")
    group.add_argument(
        "--lead-seconds", type=int, default=20, help="how long the leads come (default 20)"
    )
    group.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run `hub web` and this many `hub worker` processes instead of one `hub up` "
        "(needs --redis-url; meant for PostgreSQL, --database-url)",
    )


def reminders_config(secret: str, api_port: int) -> str:
    return f"""
[leads]
callback_within = "0s"
escalate_after = "1h"

[channels.{TELEGRAM_CHANNEL}]
type = "telegram"
bot_token = "{TELEGRAM_TOKEN}"
webhook_secret = "{secret}"
api_base = "http://127.0.0.1:{api_port}"
"""


@dataclass
class Notices:
    """A local Bot API that takes the hub's reminder notices and notes when each arrived."""

    arrived: dict[str, float]
    next_id: int = 1

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        text = str(form.get("text", ""))
        for word in text.split():
            if word.startswith("+998"):
                self.arrived.setdefault(word.rstrip(","), time.monotonic())
        self.next_id += 1
        result = {
            "message_id": self.next_id,
            "date": int(time.time()),
            "chat": {"id": int(str(form.get("chat_id", "0"))), "type": "private"},
            "text": text,
        }
        return web.json_response({"ok": True, "result": result})


async def start_notices(port: int) -> tuple[Notices, web.AppRunner]:
    notices = Notices({})
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", notices.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return notices, runner


def database_url(args: argparse.Namespace, workdir: Path) -> str:
    return args.database_url or f"sqlite+aiosqlite:///{workdir / 'data' / 'hub.db'}"


async def seed_burst(db: Database, count: int, due_at: datetime) -> list[int]:
    """`count` contacts, each with a lead and a reminder due at `due_at`; the reminder ids."""
    now = utcnow()
    tag = secrets.token_hex(4)
    ids: list[int] = []
    async with db.write() as session:
        for start in range(0, count, INSERT_BATCH):
            size = min(INSERT_BATCH, count - start)
            contacts = (
                await session.execute(
                    insert(CONTACTS).returning(CONTACTS.c.id),
                    [
                        {
                            "name": f"Burst {tag} {start + n}",
                            "tags": [],
                            "custom_fields": {},
                            "created_at": now,
                            "updated_at": now,
                        }
                        for n in range(size)
                    ],
                )
            ).scalars()
            contact_ids = list(contacts)
            leads = (
                await session.execute(
                    insert(LEADS).returning(LEADS.c.id, LEADS.c.contact_id),
                    [
                        {
                            "contact_id": c,
                            "source": "form",
                            "form_id": FORM_ID,
                            "pipeline": "default",
                            "stage": "new",
                            "status": "open",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for c in contact_ids
                    ],
                )
            ).all()
            reminders = (
                await session.execute(
                    insert(REMINDERS).returning(REMINDERS.c.id),
                    [
                        {
                            "lead_id": lead.id,
                            "contact_id": lead.contact_id,
                            "due_at": due_at,
                            "status": "pending",
                            "kind": "callback",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for lead in leads
                    ],
                )
            ).scalars()
            ids += list(reminders)
    return ids


async def count_fired(db: Database, ids: list[int]) -> int:
    async with db.read() as session:
        low, high = min(ids), max(ids)
        found = await session.scalar(
            select(func.count())
            .select_from(REMINDERS)
            .where(
                REMINDERS.c.id.between(low, high),
                REMINDERS.c.status == "notified",
            )
        )
        return int(found or 0)


async def firing_times(db: Database, ids: list[int]) -> list[tuple[datetime, datetime]]:
    async with db.read() as session:
        rows = await session.execute(
            select(REMINDERS.c.due_at, REMINDERS.c.notified_at).where(
                REMINDERS.c.id.between(min(ids), max(ids))
            )
        )
        return [(r.due_at, r.notified_at) for r in rows if r.notified_at is not None]


class Events:
    """Every reminder.due on the hub's live stream: per reminder id, how many; per phone, when
    it could be read."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.key = f"{prefix}events"
        self.per_reminder: Counter[int] = Counter()
        self.announced: dict[int, float] = {}  # reminder id -> wall-clock time it was read
        self.by_phone: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        last = await self.redis.xrevrange(self.key, count=1)
        self.task = asyncio.create_task(self._read(last[0][0] if last else "0-0"))

    async def _read(self, last: Any) -> None:
        while True:
            found = await self.redis.xread({self.key: last}, count=2000, block=200)
            for _stream, entries in found or []:
                now, wall = time.monotonic(), time.time()
                for entry_id, fields in entries:
                    last = entry_id
                    event = json.loads(fields[b"event"])
                    if event.get("type") != "reminder.due":
                        continue
                    data = event["data"]
                    self.per_reminder[int(data["id"])] += 1
                    self.announced.setdefault(int(data["id"]), wall)
                    for phone in (data.get("contact") or {}).get("phones") or []:
                        self.by_phone.setdefault(phone, now)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


async def burst(
    args: argparse.Namespace, db: Database, events: Events, err: Console
) -> dict[str, Any]:
    due_at = (utcnow() + timedelta(seconds=BURST_LEAD_SECONDS)).replace(microsecond=0)
    err.print(f"writing {args.reminders} reminders due at {due_at:%H:%M:%S} UTC")
    ids = await seed_burst(db, args.reminders, due_at)
    deadline = time.monotonic() + BURST_LEAD_SECONDS + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        fired = await count_fired(db, ids)
        if fired >= len(ids) and all(i in events.announced for i in ids):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # a second announcement of any reminder would show by now
    times = await firing_times(db, ids)
    committed = sorted((notified - due).total_seconds() for due, notified in times)
    due_ts = due_at.timestamp()
    announced = sorted(events.announced[i] - due_ts for i in ids if i in events.announced)
    counts = [events.per_reminder.get(i, 0) for i in ids]
    return {
        "reminders": len(ids),
        "fired": len(times),
        "p50_late_s": round(percentile(announced, 0.50), 3),
        "p99_late_s": round(percentile(announced, 0.99), 3),
        "max_late_s": round(announced[-1], 3) if announced else None,
        "total_s": round(announced[-1], 3) if announced else None,
        "p50_committed_s": round(percentile(committed, 0.50), 3),
        "max_committed_s": round(committed[-1], 3) if committed else None,
        "events_once": sum(1 for c in counts if c == 1),
        "events_missing": sum(1 for c in counts if c == 0),
        "events_twice_or_more": sum(1 for c in counts if c > 1),
    }


async def link_operator(db: Database) -> None:
    async with db.write() as session:
        user = User(
            email=f"bench-{secrets.token_hex(4)}@example.com",
            name="Bench operator",
            role="operator",
            password_hash=hash_password(secrets.token_urlsafe(16)),
        )
        session.add(user)
        await session.flush()
        chat = str(OPERATOR_CHAT_BASE + random.randrange(100_000_000))
        session.add(NotificationPrefs(user_id=user.id, via="telegram", telegram_chat_id=chat))


async def speed_to_lead(
    args: argparse.Namespace, url: str, events: Events, notices: Notices, err: Console
) -> dict[str, Any]:
    total = args.lead_rate * args.lead_seconds
    base = random.randrange(1_000_000, 8_000_000)
    posted: dict[str, float] = {}
    answered: list[float] = []
    errors = 0
    err.print(f"posting {total} form leads at {args.lead_rate}/s")

    async def post(session: aiohttp.ClientSession, phone: str) -> None:
        nonlocal errors
        posted[phone] = sent = time.monotonic()
        try:
            async with session.post(
                f"{url}/forms/{FORM_ID}", json={"name": "Lead", "phone": phone}
            ) as response:
                if response.status != 201:
                    errors += 1
                answered.append(time.monotonic() - sent)
        except (aiohttp.ClientError, TimeoutError):
            errors += 1

    started = time.monotonic()
    tasks = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for n in range(total):
            wait = started + n / args.lead_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(post(session, f"+99890{base + n:07d}")))
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # polled: two sources, both filled by other tasks
        notified = len(notices.arrived.keys() & posted.keys())
        announced = len(events.by_phone.keys() & posted.keys())
        if min(notified, announced) >= len(posted):
            break
        await asyncio.sleep(0.1)
    event_lag = sorted(events.by_phone[p] - t for p, t in posted.items() if p in events.by_phone)
    notice_lag = sorted(notices.arrived[p] - t for p, t in posted.items() if p in notices.arrived)

    def figures(lags: list[float]) -> dict[str, Any]:
        return {
            "count": len(lags),
            "p50_s": round(percentile(lags, 0.5), 3),
            "p99_s": round(percentile(lags, 0.99), 3),
            "max_s": round(lags[-1], 3) if lags else None,
        }

    return {
        "leads": total,
        "rate": args.lead_rate,
        "post_errors": errors,
        "form_answer": figures(sorted(answered)),
        "reminder_due_event": figures(event_lag),
        "telegram_notice": figures(notice_lag),
    }


async def bench(args: argparse.Namespace, workdir: Path, err: Console) -> dict[str, Any]:
    port, api_port = free_port(), free_port()
    prefix = f"bench:{random.getrandbits(40):010x}:"
    notices, runner = await start_notices(api_port)
    env = hub_env(
        args, workdir, port, prefix, reminders_config(secrets.token_urlsafe(16), api_port)
    )
    if args.workers and not args.redis_url:
        raise BenchError("--workers needs --redis-url: only `hub up` runs the embedded Redis")
    if args.database_url or args.workers:
        migrate(env, workdir)
    command = "web" if args.workers else "up"
    hub = start_server("hub", [sys.executable, "-m", "hubcli.main", command], env, port, workdir)
    workers = [
        start_server(f"worker{n}", [sys.executable, "-m", "hubcli.main", "worker"], env, 0, workdir)
        for n in range(args.workers)
    ]
    db = Database(database_url(args, workdir))
    redis = Redis.from_url(args.redis_url or embedded_url(workdir / "data"))
    events = Events(redis, prefix)
    try:
        with running(hub):
            await wait_healthy(hub)
            await events.start()
            burst_figures = await burst(args, db, events, err)
            if burst_figures["events_missing"]:
                err.print(f"events went missing; the hub's log ends with:\n{hub.stderr_tail()}")
            await link_operator(db)
            lead_figures = await speed_to_lead(args, hub.url, events, notices, err)
    except BaseException:
        err.print(f"the hub's stderr ends with:\n{hub.stderr_tail()}")
        raise
    finally:
        for worker in workers:
            worker.stop()
        await events.stop()
        await redis.aclose()
        await db.dispose()
        await runner.cleanup()
        if args.redis_url:
            forget_redis_keys(args.redis_url, prefix)
    return {"burst": burst_figures, "speed_to_lead": lead_figures}


def report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    out = Console()
    b, s = figures["burst"], figures["speed_to_lead"]
    table = Table(title=f"{b['reminders']} reminders due in the same second: lateness in s")
    columns = ("fired", "committed p50", "announced p50", "p99", "max = total", "events 1x")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        str(b["fired"]),
        str(b["p50_committed_s"]),
        str(b["p50_late_s"]),
        str(b["p99_late_s"]),
        str(b["total_s"]),
        f"{b['events_once']} (missing {b['events_missing']}, twice {b['events_twice_or_more']})",
    )
    out.print(table)
    table = Table(
        title=f"speed to lead: {s['leads']} form leads at {s['rate']}/s, callback at once"
    )
    for column in ("from the form post to", "count", "p50 s", "p99 s", "max s"):
        table.add_column(column, justify="left" if column.startswith("from") else "right")
    for name, key in (
        ("the form's answer", "form_answer"),
        ("reminder.due event", "reminder_due_event"),
        ("Telegram notice", "telegram_notice"),
    ):
        f = s[key]
        table.add_row(name, str(f["count"]), str(f["p50_s"]), str(f["p99_s"]), str(f["max_s"]))
    out.print(table)
    lead_p99 = max(s["reminder_due_event"]["p99_s"], s["telegram_notice"]["p99_s"])
    verdicts = [
        ("burst: every one announced within", (b["total_s"] or 1e9) <= GOAL_BURST_TOTAL_S, "5 s"),
        ("steady state (speed to lead): p99 <=", lead_p99 <= GOAL_LEAD_P99_S, "1 s"),
    ]
    for text, ok, goal in verdicts:
        out.print(f"goal {text} {goal}: {'met' if ok else 'MISSED'}")
    out.print(f"command: {reminder_command(args)}")


def reminder_command(args: argparse.Namespace) -> str:
    parts = ["hub", "bench", "--target", "reminders", "--reminders", str(args.reminders)]
    parts += ["--lead-rate", str(args.lead_rate), "--lead-seconds", str(args.lead_seconds)]
    if args.workers:
        parts += ["--workers", str(args.workers)]
    if args.database_url:
        parts += ["--database-url", redact(args.database_url)]
    if args.redis_url:
        parts += ["--redis-url", redact(args.redis_url)]
    return " ".join(parts)


def run_reminder_bench(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix=workdir_prefix()) as tmp:
        try:
            figures = asyncio.run(bench(args, Path(tmp), err))
        except BenchError as exc:
            print(f"hub bench: {exc}", file=sys.stderr)
            return 2
    figures["command"] = reminder_command(args)
    figures["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report(args, figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    b = figures["burst"]
    ok = b["fired"] == b["reminders"] and b["events_twice_or_more"] == 0
    return 0 if ok else 1
