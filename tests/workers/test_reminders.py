"""Callback reminders on a real arq worker and a real Redis: created with the lead, fired once at
their due time, skipped when done, moved by a snooze, recovered by the sweep, escalated once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.leads import reminders as reminders_module
from hub.leads.reminders import Due, enqueue_dues
from hub.metrics import REMINDERS_FIRED
from hub.models import Reminder, User, utcnow
from hub.runtime import Runtime, queue_name
from hub.settings import LeadsConfig, Settings
from tests.conftest import TEST_REDIS_URL, auth
from tests.conftest import sms_event as sms
from tests.workers.test_deliver import run_worker
from webhooks.context import RUNTIME
from workers.reminders import RUNTIME as JOB_RUNTIME
from workers.reminders import sweep_reminders

Client = TestClient[Any, Any]
AT_ONCE = LeadsConfig(callback_within=timedelta(0), escalate_after=timedelta(minutes=30))


async def reminders(db: Database) -> list[Reminder]:
    async with db.read() as session:
        return list(await session.scalars(select(Reminder).order_by(Reminder.id)))


async def due_events(runtime: Runtime) -> list[dict[str, Any]]:
    """The reminder.due events on the live stream, oldest first."""
    entries = await runtime.redis.xrange(f"{runtime.settings.redis_prefix}events")
    events = [json.loads(fields[b"event"]) for _, fields in entries]
    return [e["data"] for e in events if e["type"] == "reminder.due"]


def fired_total() -> float:
    return REMINDERS_FIRED._value.get()


async def test_a_form_lead_with_a_phone_gets_a_pending_callback_reminder(
    client: Client, db: Database, token: str
) -> None:
    before = utcnow()
    response = await client.post("/forms/callback", json={"name": "Dilnoza", "phone": "901234567"})
    assert response.status == 201, await response.text()
    lead = await response.json()
    (reminder,) = await reminders(db)
    async with db.read() as session:
        operator = await session.scalar(select(User.id).where(User.email == "op@example.com"))
    assert (reminder.lead_id, reminder.contact_id) == (lead["lead_id"], lead["contact_id"])
    assert (reminder.status, reminder.assignee_id) == ("pending", operator)
    window = timedelta(minutes=15)
    assert before + window <= reminder.due_at <= utcnow() + window
    # not due soon: no job yet; the sweep queues it, deferred, when its time comes near
    runtime = client.server.app[RUNTIME]
    job_id = runtime.settings.redis_prefix + Due(reminder.id, reminder.due_at).job_id
    queue = queue_name(runtime.settings)
    assert await runtime.redis.zscore(queue, job_id) is None
    async with db.write() as session:
        soon = utcnow() + timedelta(seconds=5)
        await session.execute(update(Reminder).values(due_at=soon))
    assert await sweep_reminders({JOB_RUNTIME: runtime}) == "queued 1, escalated 0, resent 0"
    job_id = runtime.settings.redis_prefix + Due(reminder.id, soon).job_id
    score = await runtime.redis.zscore(queue, job_id)
    assert score == pytest.approx(soon.timestamp() * 1000, abs=2)
    # the same contact again: the open lead is joined, no second reminder
    again = await client.post("/forms/callback", json={"phone": "+998901234567"})
    assert again.status == 201
    assert len(await reminders(db)) == 1


async def test_no_phone_no_reminder_and_operators_take_turns(db: Database) -> None:
    async with db.write() as session:
        first = await create_user(session, "a@example.com", "pw-123456789", "operator", "A")
        second = await create_user(session, "b@example.com", "pw-123456789", "operator", "B")
        await create_user(session, "m@example.com", "pw-123456789", "manager", "M")
        ids = (first.id, second.id)
    mail = InboundEvent(
        channel="support",
        channel_type="email",
        external_id="<m1@x>",
        source="email",
        sender=Sender(emails=("d@example.org",)),
        text="Hi",
    )
    result = await ingest(db, mail, "UZ", timedelta(minutes=15))
    assert result.lead_created and result.reminders == ()
    phones = ["+998901234561", "+998901234562", "+998901234563"]
    for n, phone in enumerate(phones):
        result = await ingest(db, sms(f"SM{n}", phone), "UZ", timedelta(minutes=15))
        assert len(result.reminders) == 1
    assignees = [r.assignee_id for r in await reminders(db)]
    assert assignees == [ids[0], ids[1], ids[0]]  # the fewest open reminders, ties by id
    # callers that pass no callback_within (older ones) create none
    assert (await ingest(db, sms("SM9", "+998901234569"), "UZ")).reminders == ()


async def test_due_at_once_the_worker_fires_it_with_the_contact_and_lead(
    make_client: Any, db: Database
) -> None:
    client = await make_client(leads=AT_ONCE)
    runtime = client.server.app[RUNTIME]
    fired = fired_total()
    response = await client.post("/forms/callback", json={"name": "Dilnoza", "phone": "901234567"})
    assert response.status == 201
    await run_worker(runtime)
    (reminder,) = await reminders(db)
    assert reminder.status == "notified" and reminder.notified_at is not None
    assert reminder.notified_at >= reminder.due_at
    (event,) = await due_events(runtime)
    assert event["id"] == reminder.id and event["status"] == "notified"
    assert event["contact"]["phones"] == ["+998901234567"]
    assert event["contact"]["name"] == "Dilnoza"
    assert event["lead"]["id"] == reminder.lead_id and event["lead"]["source"] == "form"
    assert fired_total() == fired + 1


async def test_a_missed_call_flag_makes_it_due_at_once(db: Database) -> None:
    result = await ingest(db, sms("SM1", "+998901234567", callback_now=True), "UZ", timedelta(1))
    (due,) = result.reminders
    assert due.due_at <= utcnow()


async def test_done_before_due_fires_nothing(
    client: Client, db: Database, token: str, settings: Settings
) -> None:
    result = await ingest(db, sms("SM1", "+998901234567"), "UZ", None)
    assert result.lead_id is not None
    due_at = (utcnow() + timedelta(seconds=1)).isoformat()
    created = await client.post(
        "/api/reminders", json={"lead_id": result.lead_id, "due_at": due_at}, headers=auth(token)
    )
    assert created.status == 201, await created.text()
    reminder_id = (await created.json())["id"]
    done = await client.post(f"/api/reminders/{reminder_id}/done", headers=auth(token))
    assert done.status == 200 and (await done.json())["status"] == "done"
    runtime = client.server.app[RUNTIME]
    fired = fired_total()
    await run_worker(runtime)  # burst: runs the deferred job when it is due, then stops
    assert fired_total() == fired and await due_events(runtime) == []
    (reminder,) = await reminders(db)
    assert (reminder.status, reminder.notified_at) == ("done", None)


async def test_a_snooze_fires_at_the_new_time_only(
    make_client: Any, db: Database, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reminders_module, "SNOOZE_UNIT", timedelta(seconds=1))
    client = await make_client(leads=AT_ONCE)
    runtime = client.server.app[RUNTIME]
    await client.post("/forms/callback", json={"phone": "901234567"})
    (reminder,) = await reminders(db)
    snoozed = await client.post(
        f"/api/reminders/{reminder.id}/snooze", json={"minutes": 2}, headers=auth(token)
    )
    assert snoozed.status == 200, await snoozed.text()
    body = await snoozed.json()
    assert body["status"] == "pending" and body["due_at"] > reminder.due_at.isoformat()
    fired = fired_total()
    await run_worker(runtime)  # the first job finds a new due time; the second fires
    (after,) = await reminders(db)
    assert after.status == "notified" and after.due_at.isoformat() == body["due_at"]
    assert after.notified_at is not None and after.notified_at >= after.due_at
    assert fired_total() == fired + 1
    assert [e["due_at"] for e in await due_events(runtime)] == [body["due_at"]]


def delete_prefix(prefix: str) -> int:
    """The per-test FLUSHALL: every key of this hub (queue, jobs, stream), none of others'."""
    client = sync_redis.Redis.from_url(TEST_REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        keys += list(client.scan_iter(match=f"arq:*{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


async def test_after_redis_loses_every_key_the_sweep_fires_what_is_due(
    make_client: Any, db: Database
) -> None:
    client = await make_client(leads=AT_ONCE)
    runtime = client.server.app[RUNTIME]
    for n in range(5):
        response = await client.post("/forms/callback", json={"phone": f"+99890123456{n}"})
        assert response.status == 201
    assert delete_prefix(runtime.settings.redis_prefix) > 0
    assert await runtime.redis.zcard(queue_name(runtime.settings)) == 0
    fired = fired_total()
    await run_worker(runtime)  # the sweep runs at start-up and queues the five again
    assert {r.status for r in await reminders(db)} == {"notified"}
    assert fired_total() == fired + 5
    assert len(await due_events(runtime)) == 5


async def test_two_workers_racing_fire_each_reminder_once(settings: Settings, db: Database) -> None:
    now_settings = replace(settings, leads=AT_ONCE)
    dues = []
    for n in range(20):
        result = await ingest(db, sms(f"SM{n}", f"+9989012345{n:02d}"), "UZ", timedelta(0))
        dues.extend(result.reminders)
    one, two = Runtime.open(now_settings), Runtime.open(now_settings)
    try:
        await enqueue_dues(one, dues)
        for due in dues:  # the same due time queued again under other ids: duplicates
            await one.enqueue(
                "fire_reminder", due.reminder_id, due.due_at.isoformat(), job_id=f"dup:{due.job_id}"
            )
            await one.enqueue(
                "fire_reminder",
                due.reminder_id,
                due.due_at.isoformat(),
                job_id=f"dup2:{due.job_id}",
            )
        fired = fired_total()
        await asyncio.gather(run_worker(one), run_worker(two))
        events = await due_events(one)
    finally:
        await one.close()
        await two.close()
    assert {r.status for r in await reminders(db)} == {"notified"}
    assert fired_total() == fired + 20
    assert sorted(e["id"] for e in events) == sorted(d.reminder_id for d in dues)


async def test_an_unanswered_reminder_is_escalated_once(settings: Settings, db: Database) -> None:
    async with db.write() as session:
        boss = await create_user(session, "boss@example.com", "pw-123456789", "manager", "Boss")
        operator = await create_user(session, "op2@example.com", "pw-123456789", "operator", "Op")
        operator.manager_id = boss.id
        boss_id = boss.id
    result = await ingest(db, sms("SM1", "+998901234567"), "UZ", timedelta(0))
    runtime = Runtime.open(
        replace(settings, leads=LeadsConfig(timedelta(0), escalate_after=timedelta(minutes=30)))
    )
    try:
        await enqueue_dues(runtime, result.reminders)
        await run_worker(runtime)
        (reminder,) = await reminders(db)
        assert reminder.status == "notified" and reminder.escalated_at is None
        ctx = {JOB_RUNTIME: runtime}
        await sweep_reminders(ctx)  # not yet escalate_after past due
        assert (await reminders(db))[0].escalated_at is None
        async with db.write() as session:
            await session.execute(
                update(Reminder).values(due_at=reminder.due_at - timedelta(minutes=31))
            )
        assert await sweep_reminders(ctx) == "queued 0, escalated 1, resent 0"
        assert await sweep_reminders(ctx) == "queued 0, escalated 0, resent 0"
        events = await due_events(runtime)
    finally:
        await runtime.close()
    (escalated,) = await reminders(db)
    assert escalated.escalated_at is not None and escalated.status == "notified"
    assert [e.get("escalated") for e in events] == [None, True]
    assert events[1]["supervisor_id"] == boss_id and events[1]["escalated_at"] is not None


async def test_a_worker_killed_with_sigkill_then_restarted_fires_once(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    result = await ingest(db, sms("SM1", "+998901234567"), "UZ", timedelta(seconds=4))
    runtime = Runtime.open(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")} | {
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_REDIS_URL": TEST_REDIS_URL,
        "HUB_REDIS_PREFIX": settings.redis_prefix,
        "HUB_DATA_DIR": str(tmp_path / "data"),
    }
    health = f"{queue_name(settings)}:health-check"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "hubcli.main", "worker"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def wait_for(check: Any, seconds: float) -> None:
        for _ in range(int(seconds * 10)):
            if await check():
                return
            await asyncio.sleep(0.1)
        raise AssertionError("timed out")

    first = start()
    try:
        await enqueue_dues(runtime, result.reminders)
        await wait_for(lambda: runtime.redis.exists(health), 20)
        first.send_signal(signal.SIGKILL)  # before the reminder is due: its job is pending
        first.wait(5)
        second = start()
        try:

            async def notified() -> bool:
                return (await reminders(db))[0].status == "notified"

            await wait_for(notified, 20)
            await asyncio.sleep(6)  # a sweep and the re-run of the killed worker's jobs pass
            events = await due_events(runtime)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
    finally:
        if first.poll() is None:
            first.kill()
        await runtime.close()
    assert [e["id"] for e in events] == [result.reminders[0].reminder_id]


async def test_a_flushed_redis_and_a_new_worker_still_fire_all_100_on_time(
    settings: Settings, db: Database
) -> None:
    """The acceptance case with a real FLUSHDB: on a Redis database only this test uses, so it
    wipes nothing another test relies on."""
    own = replace(settings, redis_url=TEST_REDIS_URL.rsplit("/", 1)[0] + "/15", leads=AT_ONCE)
    flusher = sync_redis.Redis.from_url(own.redis_url or "")
    flusher.flushdb()
    dues = []
    soon = timedelta(seconds=4)
    for n in range(100):
        result = await ingest(db, sms(f"SM{n}", f"+998901234{n:03d}"), "UZ", soon)
        dues += result.reminders
    runtime = Runtime.open(own)
    try:
        await enqueue_dues(runtime, dues)
        assert await runtime.redis.zcard(queue_name(own)) == 100
        flusher.flushdb()  # every job, key and cron marker gone
        assert await runtime.redis.dbsize() == 0
        await run_worker(runtime)  # a new worker: its start-up sweep finds the 100 again
        events = await due_events(runtime)
    finally:
        await runtime.close()
        flusher.flushdb()
        flusher.close()
    fired = await reminders(db)
    assert {r.status for r in fired} == {"notified"}
    late = [(r.notified_at - r.due_at).total_seconds() for r in fired if r.notified_at]
    assert len(late) == 100 and min(late) >= 0  # none early
    assert max(late) < 10  # the start-up sweep found them: not a lost reminder found by chance
    assert sorted(e["id"] for e in events) == sorted(d.reminder_id for d in dues)  # once each
