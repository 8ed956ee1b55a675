"""PATCH /api/leads/{id}: stages of the lead's pipeline, won tags a customer, lost needs a
configured reason, every change is a timeline event with who and when, and goes out live."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select

from hub.db import Database
from hub.leads.reminders import Due
from hub.leads.stages import STAGE_HOOKS, StageChange, on_stage_entered
from hub.models import Contact, Lead, TimelineItem
from hub.settings import PipelineConfig, Settings
from tests.conftest import TEST_REDIS_URL, count
from tests.reports.factories import form_lead, logged_in

SALES = PipelineConfig("sales", stages=("lead", "demo", "offer"), lost_reasons=("price", "timing"))


async def test_stage_won_lost_and_the_timeline(make_client: Any, db: Database) -> None:
    client = await make_client()
    operator, headers = await logged_in(client, db, "operator")
    first = await form_lead(db, 1)
    url = f"/api/leads/{first.lead_id}"

    response = await client.patch(url, json={"stage": "contacted"}, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["stage"] == "contacted" and body["status"] == "open"
    async with db.read() as session:
        event = await session.scalar(select(TimelineItem).where(TimelineItem.kind == "event"))
    assert event is not None and event.author_id == operator.id
    assert event.meta["changes"] == {"stage": ["new", "contacted"]}
    assert event.meta["by"]["id"] == operator.id and event.created_at is not None
    assert event.conversation_id == first.conversation_id and event.direction == "internal"

    for data, reason in [
        ({"stage": "nowhere"}, "not a stage of pipeline 'default'; one of new, contacted"),
        ({"stage": "won"}, "is a status"),
        ({"status": "closed"}, "status: one of open, won, lost"),
        ({"status": "lost"}, "lost_reason: required for a lost lead; one of 'no answer'"),
        ({"status": "lost", "lost_reason": "the moon"}, "'the moon' is not one of the reasons"),
        ({"lost_reason": "no answer"}, "only for a lost lead"),
        ({"assignee_id": 999}, "no active user 999"),
        ({"assignee_id": "x"}, "must be a user id"),
        ({"colour": "red"}, "colour: not a field you can change"),
        ({}, "nothing to change"),
    ]:
        response = await client.patch(url, json=data, headers=headers)
        assert response.status == 400, data
        assert reason in (await response.json())["error"], data
    assert (await client.patch(url, data=b"{", headers=headers)).status == 400
    assert (
        await client.patch("/api/leads/424242", json={"stage": "new"}, headers=headers)
    ).status == 404
    assert (await client.patch(url, json={"stage": "new"})).status == 401
    assert await count(db, TimelineItem, TimelineItem.kind == "event") == 1  # nothing changed

    response = await client.patch(
        url, json={"status": "lost", "lost_reason": "too expensive"}, headers=headers
    )
    assert response.status == 200
    assert (await response.json())["lost_reason"] == "too expensive"
    response = await client.patch(url, json={"stage": "qualified"}, headers=headers)
    assert response.status == 409  # a lost lead's stage moves only once it is reopened

    second = await form_lead(db, 2)
    response = await client.patch(
        f"/api/leads/{second.lead_id}",
        json={"status": "won", "assignee_id": operator.id},
        headers=headers,
    )
    assert response.status == 200
    async with db.read() as session:
        contact = await session.get(Contact, second.contact_id)
        won = await session.get(Lead, second.lead_id)
        assert contact is not None and won is not None
        assert contact.tags == ["customer"] and won.closed_at is not None
        lost = await session.get(Lead, first.lead_id)
        assert lost is not None and lost.status == "lost"

    # reopening while the contact has another open lead is refused
    third = await form_lead(db, 3)
    async with db.write() as session:
        again = Lead(contact_id=third.contact_id, source="form", status="won", pipeline="default")
        session.add(again)
        await session.flush()
        again_id = again.id
    response = await client.patch(
        f"/api/leads/{again_id}", json={"status": "open"}, headers=headers
    )
    assert response.status == 409 and "already has open lead" in (await response.json())["error"]


async def test_pipeline_from_the_form_live_event_and_hook(
    make_client: Any, db: Database, settings: Settings, redis_prefix: str
) -> None:
    form = replace(settings.forms["callback"], pipeline="sales")
    client = await make_client(
        forms={"callback": form}, pipelines={"default": PipelineConfig("default"), "sales": SALES}
    )
    _operator, headers = await logged_in(client, db, "operator")
    response = await client.post(
        "/forms/callback",
        json={"phone": "+998901112233", "name": "Ali"},
        headers={"Origin": "https://shop.example.com"},
    )
    assert response.status == 201, await response.text()
    lead_id = (await response.json())["lead_id"]
    async with db.read() as session:
        lead = await session.get(Lead, lead_id)
        assert lead is not None and (lead.pipeline, lead.stage) == ("sales", "lead")

    seen: list[StageChange] = []

    @on_stage_entered
    async def remember(_session: Any, _settings: Any, change: StageChange) -> list[Due]:
        seen.append(change)
        return []

    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        response = await client.patch(
            f"/api/leads/{lead_id}", json={"stage": "demo"}, headers=headers
        )
        assert response.status == 200
        response = await client.patch(
            f"/api/leads/{lead_id}",
            json={"status": "lost", "lost_reason": "no answer"},
            headers=headers,
        )
        assert response.status == 400  # the sales pipeline has its own reasons
        assert "one of 'price', 'timing'" in (await response.json())["error"]
        entries = await redis.xrange(f"{redis_prefix}events")
    finally:
        STAGE_HOOKS.remove(remember)
        await redis.aclose()
    events = [json.loads(fields[b"event"]) for _id, fields in entries]
    updated = [e for e in events if e["type"] == "lead.updated"]
    assert len(updated) == 1 and updated[0]["data"]["stage"] == "demo"
    assert [(c.from_stage, c.to_stage) for c in seen] == [("lead", "demo")]

    response = await client.get("/api/pipelines", headers=headers)
    names = [p["name"] for p in (await response.json())["items"]]
    assert names == ["default", "sales"]
