"""Follow-up rules on a stage change (through PATCH /api/leads/{id}) and re-engagement of
quiet customers: reminders the configuration asks for, once each."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from hub.db import Database
from hub.leads.followups import reengage
from hub.models import Lead, Reminder, TimelineItem, utcnow
from hub.settings import FollowUpRule, Settings
from tests.reports.factories import form_lead, logged_in


async def reminders(db: Database, kind: str) -> list[Reminder]:
    async with db.read() as session:
        query = select(Reminder).where(Reminder.kind == kind).order_by(Reminder.id)
        return list(await session.scalars(query))


async def test_entering_a_stage_plans_its_follow_up_once(
    make_client: Any, settings: Settings, db: Database
) -> None:
    rules = (
        FollowUpRule("qualified", timedelta(days=1), "Call to agree the offer"),
        FollowUpRule("won", timedelta(days=30)),
    )
    client = await make_client(leads=replace(settings.leads, follow_up=rules))
    operator, headers = await logged_in(client, db, "operator")
    lead = await form_lead(db, 1)
    url = f"/api/leads/{lead.lead_id}"
    before = utcnow()
    assert (await client.patch(url, json={"stage": "contacted"}, headers=headers)).status == 200
    assert await reminders(db, "follow_up") == []
    assert (await client.patch(url, json={"stage": "qualified"}, headers=headers)).status == 200
    (planned,) = await reminders(db, "follow_up")
    assert before + timedelta(days=1) <= planned.due_at <= utcnow() + timedelta(days=1)
    assert planned.note == "Call to agree the offer" and planned.assignee_id == operator.id
    assert planned.status == "pending" and planned.lead_id == lead.lead_id
    # setting the same stage again is no change: no second reminder
    await client.patch(
        url, json={"stage": "qualified", "assignee_id": operator.id}, headers=headers
    )
    assert len(await reminders(db, "follow_up")) == 1
    assert (await client.patch(url, json={"status": "won"}, headers=headers)).status == 200
    won = (await reminders(db, "follow_up"))[1]
    assert won.note == "Follow up: the lead entered won"


async def test_a_quiet_customer_gets_one_reengagement_reminder(db: Database) -> None:
    won, fresh = await form_lead(db, 1), await form_lead(db, 2)
    long_ago = utcnow() - timedelta(days=200)
    async with db.write() as session:
        for result, when in ((won, long_ago), (fresh, utcnow() - timedelta(days=10))):
            await session.execute(
                update(Lead)
                .where(Lead.id == result.lead_id)
                .values(status="won", closed_at=when, updated_at=when)
            )
            await session.execute(
                update(TimelineItem)
                .where(TimelineItem.contact_id == result.contact_id)
                .values(created_at=when)
            )
    (due,) = await reengage(db, timedelta(days=180))
    assert await reengage(db, timedelta(days=180)) == []  # once per lead
    (reminder,) = await reminders(db, "reengage")
    assert (reminder.id, reminder.lead_id) == (due.reminder_id, won.lead_id)
    assert "180 days" in (reminder.note or "")
