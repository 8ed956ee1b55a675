"""The reminders API: list with filters and pages, create, done, snooze, cancel; a reply to the
contact marks their callback reminder done."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.leads.reminders import Due
from hub.models import Reminder, User, utcnow
from hub.runtime import queue_name
from tests.conftest import auth
from tests.webhooks.test_replies import recorder  # noqa: F401  (a fixture)
from tests.workers.test_deliver import RecordingChannel
from webhooks.context import RUNTIME

Client = TestClient[Any, Any]
REMINDER_KEYS = {
    "id",
    "lead_id",
    "contact_id",
    "assignee_id",
    "due_at",
    "status",
    "note",
    "notified_at",
    "escalated_at",
}


async def lead(db: Database, n: int = 1) -> Any:
    event = InboundEvent(
        channel="sms",
        channel_type="twilio",
        external_id=f"SM{n}",
        source="sms",
        sender=Sender(phones=(f"+99890123456{n}",)),
        text="Salom",
    )
    return await ingest(db, event, "UZ", timedelta(minutes=15))


async def operator_id(db: Database) -> int:
    async with db.read() as session:
        found = await session.scalar(select(User.id).where(User.email == "op@example.com"))
    assert found is not None
    return int(found)


async def test_create_validates_and_queues_the_job(
    client: Client, db: Database, token: str
) -> None:
    seeded = await lead(db)
    me = await operator_id(db)
    due = (utcnow() + timedelta(seconds=6)).replace(microsecond=0)  # soon: queued at once
    bad = [
        ({"due_at": due.isoformat()}, "lead_id"),
        ({"lead_id": "1", "due_at": due.isoformat()}, "lead_id"),
        ({"lead_id": seeded.lead_id}, "due_at"),
        ({"lead_id": seeded.lead_id, "due_at": "tomorrow"}, "due_at"),
        ({"lead_id": seeded.lead_id, "due_at": "2030-01-01T10:00:00"}, "due_at"),
        ({"lead_id": seeded.lead_id, "due_at": due.isoformat(), "assignee_id": 999}, "assignee_id"),
        ({"lead_id": seeded.lead_id, "due_at": due.isoformat(), "note": 5}, "note"),
    ]
    for body, field in bad:
        response = await client.post("/api/reminders", json=body, headers=auth(token))
        assert response.status == 400, body
        answer = await response.json()
        assert answer["field"] == field and field in answer["error"]
    missing = await client.post(
        "/api/reminders", json={"lead_id": 999, "due_at": due.isoformat()}, headers=auth(token)
    )
    assert missing.status == 404 and "lead 999" in (await missing.json())["error"]
    created = await client.post(
        "/api/reminders",
        json={
            "lead_id": seeded.lead_id,
            "due_at": due.astimezone().isoformat(),
            "assignee_id": me,
            "note": "call about delivery",
        },
        headers=auth(token),
    )
    assert created.status == 201, await created.text()
    body = await created.json()
    assert set(body) >= REMINDER_KEYS
    assert (body["lead_id"], body["contact_id"], body["assignee_id"]) == (
        seeded.lead_id,
        seeded.contact_id,
        me,
    )
    assert (body["status"], body["note"], body["due_at"]) == (
        "pending",
        "call about delivery",
        due.isoformat(),
    )
    runtime = client.server.app[RUNTIME]
    job_id = runtime.settings.redis_prefix + Due(body["id"], due).job_id
    assert await runtime.redis.zscore(queue_name(runtime.settings), job_id) is not None


async def test_list_filters_and_pages(client: Client, db: Database, token: str) -> None:
    me = await operator_id(db)
    for n in range(3):
        await lead(db, n)  # automatic callbacks: the only operator gets them
    async with db.write() as session:
        first = await session.get_one(Reminder, 1)
        first.assignee_id = None
        first.status = "notified"
    pages, cursor = [], None
    while True:
        query = "/api/reminders?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(query, headers=auth(token))
        assert response.status == 200
        body = await response.json()
        pages.append([r["id"] for r in body["items"]])
        if (cursor := body["next_cursor"]) is None:
            break
    assert pages == [[3, 2], [1]]

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/api/reminders?{query}", headers=auth(token))
        assert response.status == 200, await response.text()
        return [r["id"] for r in (await response.json())["items"]]

    assert await ids("assignee=me") == [3, 2]
    assert await ids(f"assignee={me}&status=pending") == [3, 2]
    assert await ids("assignee=none") == [1]
    assert await ids("status=notified") == [1]
    assert await ids("status=done") == []
    wrong = await client.get("/api/reminders?status=late", headers=auth(token))
    assert wrong.status == 400 and (await wrong.json())["field"] == "status"
    anonymous = await client.get("/api/reminders")
    assert anonymous.status == 401


async def test_done_snooze_cancel(client: Client, db: Database, token: str) -> None:
    await lead(db, 1)
    await lead(db, 2)
    for minutes in (0, 10081, "5", None):
        bad = await client.post(
            "/api/reminders/1/snooze", json={"minutes": minutes}, headers=auth(token)
        )
        assert bad.status == 400 and (await bad.json())["field"] == "minutes"
    before = utcnow()
    snoozed = await client.post(
        "/api/reminders/1/snooze", json={"minutes": 30}, headers=auth(token)
    )
    assert snoozed.status == 200
    body = await snoozed.json()
    assert set(body) >= REMINDER_KEYS and body["status"] == "pending"
    assert body["due_at"] >= (before + timedelta(minutes=30)).isoformat()
    done = await client.post("/api/reminders/1/done", headers=auth(token))
    assert done.status == 200 and (await done.json())["status"] == "done"
    again = await client.post("/api/reminders/1/done", headers=auth(token))
    assert again.status == 200  # idempotent
    closed = await client.post("/api/reminders/1/snooze", json={"minutes": 5}, headers=auth(token))
    assert closed.status == 409 and "done" in (await closed.json())["error"]
    cancelled = await client.post("/api/reminders/2/cancel", headers=auth(token))
    assert cancelled.status == 200 and (await cancelled.json())["status"] == "cancelled"
    refused = await client.post("/api/reminders/2/done", headers=auth(token))
    assert refused.status == 409
    unknown = await client.post("/api/reminders/99/done", headers=auth(token))
    assert unknown.status == 404 and (await unknown.json())["error"] == "reminder 99 not found"
    not_an_id = await client.post("/api/reminders/x/cancel", headers=auth(token))
    assert not_an_id.status == 400


async def test_answering_the_contact_marks_the_reminder_done(
    client: Client,
    db: Database,
    token: str,
    recorder: RecordingChannel,  # noqa: F811
) -> None:
    seeded = await lead(db)
    other = await lead(db, 2)
    response = await client.post(
        f"/api/conversations/{seeded.conversation_id}/messages",
        json={"text": "Calling you now"},
        headers=auth(token),
    )
    assert response.status == 202, await response.text()
    async with db.read() as session:
        statuses = {r.contact_id: r.status for r in await session.scalars(select(Reminder))}
    assert statuses == {seeded.contact_id: "done", other.contact_id: "pending"}
