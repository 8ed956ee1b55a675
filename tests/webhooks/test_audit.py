"""GET /api/audit: admins read who did what from where, filtered and paged; nobody else."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from hub.auth.users import create_user
from hub.db import Database
from tests.conftest import PASSWORD, auth

Client = TestClient[Any, Any]


async def test_audit_log_filters_and_pages(client: Client, db: Database, token: str) -> None:
    async with db.write() as session:
        await create_user(session, "root@example.com", PASSWORD, "admin")
    bad_login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": "wrong"}
    )
    assert bad_login.status == 401
    login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    admin = (await login.json())["token"]
    admin_id = (await login.json())["user"]["id"]
    denied = await client.get("/api/audit", headers=auth(token))
    assert denied.status == 403 and "needs the admin role" in (await denied.json())["error"]
    await client.get("/api/export/contacts", headers=auth(token))

    everything = await client.get("/api/audit", headers=auth(admin))
    assert everything.status == 200
    items = (await everything.json())["items"]
    actions = [i["action"] for i in items]
    # Newest first: the operator's refused export and audit read, the logins.
    assert actions[:2] == ["export.contacts.denied", "audit.read.denied"]
    assert actions.count("auth.login") == 2 and actions.count("auth.login_failed") == 1
    assert all(i["ip"] == "127.0.0.1" for i in items)
    assert items[0]["user_email"] == "op@example.com"

    logins = await client.get("/api/audit", params={"action": "auth.*"}, headers=auth(admin))
    assert {i["action"] for i in (await logins.json())["items"]} == {
        "auth.login",
        "auth.login_failed",
    }
    mine = await client.get("/api/audit", params={"user_id": admin_id}, headers=auth(admin))
    assert [i["action"] for i in (await mine.json())["items"]] == ["auth.login"]
    target = await client.get(
        "/api/audit",
        params={"target_type": "user", "target_id": str(admin_id)},
        headers=auth(admin),
    )
    assert [i["action"] for i in (await target.json())["items"]] == ["auth.login"]
    future = await client.get(
        "/api/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=auth(admin)
    )
    assert (await future.json())["items"] == []
    past = await client.get("/api/audit", params={"until": "2000-01-01"}, headers=auth(admin))
    assert (await past.json())["items"] == []

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await (await client.get("/api/audit", params=params, headers=auth(admin))).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [i["id"] for i in items] and len(seen) == len(set(seen))

    for bad in (
        {"since": "yesterday"},
        {"user_id": "me"},
        {"limit": "0"},
        {"limit": "501"},
        {"cursor": "%%%"},
    ):
        response = await client.get("/api/audit", params=bad, headers=auth(admin))
        assert response.status == 400, bad
        assert (await response.json())["error"]
