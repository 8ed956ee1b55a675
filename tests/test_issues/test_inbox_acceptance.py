"""Issue 9 acceptance: an operator's token gets 403 on delete and export; the audit log shows
the attempt with the IP."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from hub.auth.users import create_user
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import Contact, Conversation
from tests.conftest import PASSWORD, auth, count, sms_event

Client = TestClient[Any, Any]


async def test_operator_denied_delete_and_export_and_the_audit_log_shows_it(
    client: Client, db: Database, token: str
) -> None:
    stored = await ingest(db, sms_event("SM1", "+998901234567"), "UZ")
    attempts = [
        ("DELETE", f"/api/contacts/{stored.contact_id}", "contact.delete.denied"),
        ("DELETE", f"/api/conversations/{stored.conversation_id}", "conversation.delete.denied"),
        ("GET", "/api/export/contacts?format=csv", "export.contacts.denied"),
        ("GET", "/api/export/leads?format=json", "export.leads.denied"),
    ]
    for method, path, _ in attempts:
        response = await client.request(method, path, headers=auth(token))
        assert response.status == 403, path
        reason = (await response.json())["error"]
        assert "needs the admin role; you are operator" in reason, reason
    assert await count(db, Contact) == 1 and await count(db, Conversation) == 1

    async with db.write() as session:
        await create_user(session, "root@example.com", PASSWORD, "admin")
    login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    admin = (await login.json())["token"]
    response = await client.get("/api/audit", params={"action": "*"}, headers=auth(admin))
    assert response.status == 200
    denied = [i for i in (await response.json())["items"] if i["action"].endswith(".denied")]
    assert [i["action"] for i in reversed(denied)] == [a for _, _, a in attempts]
    for entry in denied:
        assert entry["user_email"] == "op@example.com"
        assert entry["ip"] == "127.0.0.1"
        assert entry["meta"]["role"] == "operator" and entry["created_at"]
    assert denied[-1]["target_type"] == "contact"
    assert denied[-1]["target_id"] == str(stored.contact_id)
