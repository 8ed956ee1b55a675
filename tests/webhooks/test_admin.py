"""Admin routes: contacts imported over HTTP, and deactivating a user hands their work over."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from hub.auth.tokens import issue_token
from hub.db import Database
from hub.models import ApiToken, AuditEntry, Contact, Conversation, Lead, Reminder, User, utcnow
from tests.conftest import count
from tests.reports.factories import form_lead, logged_in, login, user, uz_phone

CSV = f"name,phone\nAli,{uz_phone(1)}\nVali,90 000 00 02\nNo Phone,\n".encode()


async def test_import_over_http_dry_run_then_for_real(make_client: Any, db: Database) -> None:
    client = await make_client()
    _admin, headers = await logged_in(client, db, "admin")
    response = await client.post("/api/import/contacts?dry_run=1", data=CSV, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["created"], body["rejected_count"], body["dry_run"]) == (2, 1, True)
    assert body["rejected"][0] == {
        "line": 4,
        "reason": "no phone or e-mail: nothing to match or reach the contact by",
        "row": {"name": "No Phone", "phone": ""},
    }
    assert await count(db, Contact) == 0
    for _ in range(2):
        response = await client.post("/api/import/contacts", data=CSV, headers=headers)
        assert response.status == 201
    assert await count(db, Contact) == 2  # the second post matched both
    response = await client.post("/api/import/contacts?map=nope=phone", data=CSV, headers=headers)
    assert response.status == 400 and "no column 'nope'" in (await response.json())["error"]
    response = await client.post("/api/import/contacts", data=b"\xff\xfe", headers=headers)
    assert response.status == 400
    response = await client.post("/api/import/contacts", data=b"", headers=headers)
    assert response.status == 400

    _operator, op_headers = await logged_in(client, db, "operator")
    response = await client.post("/api/import/contacts", data=CSV, headers=op_headers)
    assert response.status == 403
    assert await count(db, AuditEntry, AuditEntry.action == "import.contacts") == 3
    assert await count(db, AuditEntry, AuditEntry.action == "import.contacts.denied") == 1


async def test_deactivation_hands_over_and_deletes_nothing(make_client: Any, db: Database) -> None:
    client = await make_client()
    admin, headers = await logged_in(client, db, "admin")
    boss = await user(db, "manager")
    leaving = await user(db, "operator", manager_id=boss.id)
    colleague = await user(db, "operator")
    report_to_leaving = await user(db, "operator", manager_id=leaving.id)
    leaving_headers = await login(client, leaving.email)
    first, second = await form_lead(db, 1), await form_lead(db, 2)
    async with db.write() as session:
        for model in (Conversation, Lead):
            for row in await session.scalars(select(model)):
                row.assignee_id = leaving.id
        closed = await session.get(Lead, second.lead_id)
        assert closed is not None
        closed.status = "won"  # a closed lead stays with whoever won it
        session.add(
            Reminder(
                lead_id=first.lead_id,
                contact_id=first.contact_id,
                assignee_id=leaving.id,
                due_at=utcnow() + timedelta(hours=1),
            )
        )
        await issue_token(session, leaving, "127.0.0.1")

    url = f"/api/users/{leaving.id}/deactivate"
    for data, status, reason in [
        ({"successor_id": leaving.id}, 400, "must be someone else"),
        ({"successor_id": 999}, 400, "no active user 999"),
        ({"successor_id": "x"}, 400, "must be a user id"),
    ]:
        response = await client.post(url, json=data, headers=headers)
        assert response.status == status and reason in (await response.json())["error"]
    response = await client.post(url, json={}, headers=leaving_headers)
    assert response.status == 403

    response = await client.post(url, json={}, headers=headers)  # the manager takes over
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body == {
        "user_id": leaving.id,
        "successor_id": boss.id,
        "conversations": 2,
        "leads": 1,
        "reminders": 1,
        "tokens_revoked": 2,
    }
    assert (await client.get("/api/auth/me", headers=leaving_headers)).status == 401
    async with db.read() as session:
        gone = await session.get(User, leaving.id)
        assert gone is not None and gone.active is False
        won = await session.get(Lead, second.lead_id)
        assert won is not None and won.assignee_id == leaving.id
        moved = await session.get(User, report_to_leaving.id)
        assert moved is not None and moved.manager_id == boss.id
        assert (
            await session.scalar(
                select(ApiToken.id).where(
                    ApiToken.revoked_at.is_(None), ApiToken.user_id == leaving.id
                )
            )
            is None
        )
    response = await client.post(url, json={"successor_id": colleague.id}, headers=headers)
    assert response.status == 409
    response = await client.post(f"/api/users/{colleague.id}/deactivate", json={}, headers=headers)
    assert response.status == 400 and "has no manager" in (await response.json())["error"]
    assert (
        await client.post("/api/users/424242/deactivate", json={}, headers=headers)
    ).status == 404
    assert await count(db, AuditEntry, AuditEntry.action == "user.deactivate") == 1
    assert admin.id != leaving.id
