"""Admin user management: create, change role (audited, tokens revoked), manager, password."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.auth.users import create_user
from hub.db import Database
from hub.models import AuditEntry, User
from tests.conftest import PASSWORD, auth

Client = TestClient[Any, Any]


async def login(client: Client, email: str, password: str = PASSWORD) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def admin_token(client: Client, db: Database) -> str:
    async with db.write() as session:
        await create_user(session, "root@example.com", PASSWORD, "admin")
    return str((await (await login(client, "root@example.com")).json())["token"])


async def test_admin_creates_and_changes_users(client: Client, db: Database, token: str) -> None:
    admin = await admin_token(client, db)
    boss = await client.post(
        "/api/users",
        json={"email": "Boss@Example.com", "password": PASSWORD, "role": "manager", "name": "B"},
        headers=auth(admin),
    )
    assert boss.status == 201, await boss.text()
    boss_body = await boss.json()
    assert boss_body["email"] == "boss@example.com" and "password_hash" not in boss_body
    new = await client.post(
        "/api/users",
        json={
            "email": "new@example.com",
            "password": PASSWORD,
            "role": "operator",
            "manager_id": boss_body["id"],
        },
        headers=auth(admin),
    )
    assert new.status == 201 and (await new.json())["manager_id"] == boss_body["id"]
    new_id = (await new.json())["id"]
    duplicate = await client.post(
        "/api/users",
        json={"email": "new@example.com", "password": PASSWORD, "role": "operator"},
        headers=auth(admin),
    )
    assert duplicate.status == 409 and (await duplicate.json())["field"] == "email"
    for bad in (
        {"email": "x@example.com", "password": PASSWORD, "role": "king"},
        {"email": "x@example.com", "password": "short", "role": "operator"},
        {"email": "not-an-email", "password": PASSWORD, "role": "operator"},
        {"email": "x@example.com", "password": PASSWORD, "role": "operator", "manager_id": new_id},
        {"password": PASSWORD, "role": "operator"},
        {"email": "x@example.com", "password": PASSWORD, "role": "operator", "admin": True},
    ):
        response = await client.post("/api/users", json=bad, headers=auth(admin))
        assert response.status == 400, bad
        assert (await response.json())["error"]

    # The new operator signs in; a role change is audited and signs them out.
    their_token = (await (await login(client, "new@example.com")).json())["token"]
    assert (await client.get("/api/auth/me", headers=auth(their_token))).status == 200
    promoted = await client.patch(
        f"/api/users/{new_id}", json={"role": "manager", "name": "Nina"}, headers=auth(admin)
    )
    assert promoted.status == 200
    body = await promoted.json()
    assert body["role"] == "manager" and body["name"] == "Nina" and body["tokens_revoked"] == 1
    assert (await client.get("/api/auth/me", headers=auth(their_token))).status == 401
    async with db.read() as session:
        change = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "user.role_change")
        )
    assert change is not None and change.meta == {"from": "operator", "to": "manager"}
    assert change.target_id == str(new_id) and change.ip == "127.0.0.1"

    # A password change revokes tokens too; the new password works.
    again = (await (await login(client, "new@example.com")).json())["token"]
    changed = await client.patch(
        f"/api/users/{new_id}", json={"password": "another long one"}, headers=auth(admin)
    )
    assert changed.status == 200
    assert (await client.get("/api/auth/me", headers=auth(again))).status == 401
    assert (await login(client, "new@example.com", "another long one")).status == 200

    # A manager loop and junk are refused; the operator cannot manage users.
    boss_id = boss_body["id"]
    loop = await client.patch(
        f"/api/users/{boss_id}", json={"manager_id": new_id}, headers=auth(admin)
    )
    assert loop.status == 400 and "loop" in (await loop.json())["error"]
    for bad in ({"active": False}, {"role": "king"}, {"password": "x"}, {}, {"name": ""}):
        response = await client.patch(f"/api/users/{new_id}", json=bad, headers=auth(admin))
        assert response.status == 400, bad
    assert (
        await client.patch("/api/users/999999", json={"name": "x"}, headers=auth(admin))
    ).status == 404
    denied = await client.post(
        "/api/users",
        json={"email": "y@example.com", "password": PASSWORD, "role": "admin"},
        headers=auth(token),
    )
    assert denied.status == 403 and "needs the admin role" in (await denied.json())["error"]
    denied_patch = await client.patch(
        f"/api/users/{new_id}", json={"role": "admin"}, headers=auth(token)
    )
    assert denied_patch.status == 403
    async with db.read() as session:
        user = await session.get_one(User, new_id)
        assert user.role == "manager"


async def test_last_admin_keeps_the_role_and_tokens_revoke(client: Client, db: Database) -> None:
    admin = await admin_token(client, db)
    async with db.read() as session:
        admin_id = await session.scalar(select(User.id).where(User.role == "admin"))
    demote = await client.patch(
        f"/api/users/{admin_id}", json={"role": "operator", "name": "Z"}, headers=auth(admin)
    )
    assert demote.status == 409 and "last active admin" in (await demote.json())["error"]
    async with db.read() as session:
        user = await session.get_one(User, admin_id)
        assert (user.role, user.name) == ("admin", "root")  # nothing of the request applied
    listing = await client.get("/api/users", params={"role": "admin"}, headers=auth(admin))
    assert [u["id"] for u in (await listing.json())["items"]] == [admin_id]
    assert (await client.get("/api/users", params={"role": "x"}, headers=auth(admin))).status == 400
    revoked = await client.delete(f"/api/users/{admin_id}/tokens", headers=auth(admin))
    assert revoked.status == 200 and (await revoked.json())["tokens_revoked"] == 1
    assert (await client.get("/api/users", headers=auth(admin))).status == 401
