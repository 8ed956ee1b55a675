"""Leads and reminders follow the conversation rules: operators see and act on their own and
unassigned ones, managers also their team's; a refused action is a 403, audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from hub.db import Database
from hub.models import AuditEntry, Lead, Reminder, User, utcnow
from tests.reports.factories import form_lead, logged_in


async def test_operators_see_and_move_only_their_own_and_unassigned_leads_and_reminders(
    make_client: Any, db: Database
) -> None:
    client = await make_client()
    olga, as_olga = await logged_in(client, db, "operator")
    boris, _ = await logged_in(client, db, "operator")
    boss, as_boss = await logged_in(client, db, "manager")
    async with db.write() as session:
        await session.execute(update(User).where(User.id == boris.id).values(manager_id=boss.id))
    leads = [await form_lead(db, n) for n in range(3)]
    owners = [olga.id, boris.id, None]
    async with db.write() as session:
        for result, owner in zip(leads, owners, strict=True):
            await session.execute(
                update(Lead).where(Lead.id == result.lead_id).values(assignee_id=owner)
            )
            session.add(
                Reminder(
                    lead_id=result.lead_id,
                    contact_id=result.contact_id,
                    assignee_id=owner,
                    due_at=utcnow(),
                    status="notified",
                )
            )
    async with db.read() as session:
        reminders = {r.assignee_id: r.id for r in await session.scalars(select(Reminder))}

    async def ids(path: str, headers: dict[str, str]) -> set[int]:
        response = await client.get(path, headers=headers)
        assert response.status == 200, await response.text()
        return {item["assignee_id"] for item in (await response.json())["items"]}

    assert await ids("/api/leads", as_olga) == {olga.id, None}
    assert await ids("/api/reminders", as_olga) == {olga.id, None}
    assert await ids("/api/leads", as_boss) == {boris.id, None}
    assert await ids("/api/reminders", as_boss) == {boris.id, None}

    borises_lead = leads[1].lead_id
    refused = await client.patch(
        f"/api/leads/{borises_lead}", json={"stage": "contacted"}, headers=as_olga
    )
    assert refused.status == 403
    assert "assigned to someone else" in (await refused.json())["error"]
    done = await client.post(f"/api/reminders/{reminders[boris.id]}/done", headers=as_olga)
    assert done.status == 403
    snooze = await client.post(
        f"/api/reminders/{reminders[boris.id]}/snooze", json={"minutes": 5}, headers=as_olga
    )
    assert snooze.status == 403
    async with db.read() as session:
        assert (await session.get_one(Lead, borises_lead)).stage == "new"
        assert (await session.get_one(Reminder, reminders[boris.id])).status == "notified"
        denied = list(
            await session.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("%.denied"))
            )
        )
    assert sorted(denied) == [
        "lead.update.denied",
        "reminder.update.denied",
        "reminder.update.denied",
    ]
    # her own and unassigned ones she may move; the manager may move his team's
    for url, headers in (
        (f"/api/leads/{leads[0].lead_id}", as_olga),
        (f"/api/leads/{leads[2].lead_id}", as_olga),
        (f"/api/leads/{borises_lead}", as_boss),
    ):
        response = await client.patch(url, json={"stage": "contacted"}, headers=headers)
        assert response.status == 200, await response.text()
    response = await client.post(f"/api/reminders/{reminders[boris.id]}/done", headers=as_boss)
    assert response.status == 200
