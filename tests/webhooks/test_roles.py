"""Roles: operators see their own and unassigned conversations, managers their team's, admins all;
every refusal is a 403 with the reason, audited with the IP."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import AuditEntry, Conversation, User
from tests.conftest import PASSWORD, auth, sign_in

Client = TestClient[Any, Any]


async def make_team(client: Client, db: Database) -> dict[str, Any]:
    """A manager with one operator in their team, an operator outside it, an admin."""
    async with db.write() as session:
        manager = await create_user(session, "boss@example.com", PASSWORD, "manager")
        olga = await create_user(session, "olga@example.com", PASSWORD, "operator")
        ivan = await create_user(session, "ivan@example.com", PASSWORD, "operator")
        admin = await create_user(session, "root@example.com", PASSWORD, "admin")
        olga.manager_id = manager.id
        ids = {"manager": manager.id, "olga": olga.id, "ivan": ivan.id, "admin": admin.id}
    tokens = {
        name: await sign_in(client, f"{email}@example.com")
        for name, email in (
            ("manager", "boss"),
            ("olga", "olga"),
            ("ivan", "ivan"),
            ("admin", "root"),
        )
    }
    return {"ids": ids, "tokens": tokens}


async def conversation(db: Database, n: int, assignee_id: int | None) -> int:
    result = await ingest(
        db,
        InboundEvent(
            channel="sms",
            channel_type="twilio",
            external_id=f"SM{n}",
            source="sms",
            sender=Sender(phones=(f"+99890123450{n}",), name=f"Client {n}"),
            text=f"hello {n}",
        ),
        "UZ",
    )
    async with db.write() as session:
        row = await session.get_one(Conversation, result.conversation_id)
        row.assignee_id = assignee_id
    assert result.conversation_id is not None
    return result.conversation_id


async def listed(client: Client, token: str) -> set[int]:
    response = await client.get("/api/conversations", headers=auth(token))
    assert response.status == 200
    return {c["id"] for c in (await response.json())["items"]}


async def test_who_sees_which_conversation(client: Client, db: Database) -> None:
    team = await make_team(client, db)
    ids, tokens = team["ids"], team["tokens"]
    free = await conversation(db, 1, None)
    olgas = await conversation(db, 2, ids["olga"])
    ivans = await conversation(db, 3, ids["ivan"])
    bosses = await conversation(db, 4, ids["manager"])
    assert await listed(client, tokens["olga"]) == {free, olgas}
    assert await listed(client, tokens["ivan"]) == {free, ivans}
    assert await listed(client, tokens["manager"]) == {free, olgas, bosses}
    assert await listed(client, tokens["admin"]) == {free, olgas, ivans, bosses}

    for path in (f"/api/conversations/{ivans}", f"/api/conversations/{ivans}/messages"):
        response = await client.get(path, headers=auth(tokens["olga"]))
        assert response.status == 403
        assert "assigned to user" in (await response.json())["error"]
    reply = await client.post(
        f"/api/conversations/{ivans}/messages", json={"text": "hi"}, headers=auth(tokens["olga"])
    )
    assert reply.status == 403
    note = await client.post(
        f"/api/conversations/{bosses}/notes", json={"text": "x"}, headers=auth(tokens["olga"])
    )
    assert note.status == 403
    seen = await client.get(f"/api/conversations/{olgas}", headers=auth(tokens["manager"]))
    assert seen.status == 200
    hidden = await client.get(f"/api/conversations/{ivans}", headers=auth(tokens["manager"]))
    assert hidden.status == 403
    async with db.read() as session:
        denied = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action.like("conversation.%.denied"))
            )
        )
    assert len(denied) == 5
    assert {d.target_id for d in denied} == {str(ivans), str(bosses)}
    assert all(d.ip == "127.0.0.1" for d in denied)


async def test_assignment_rules_and_live_event(
    client: Client, db: Database, redis_prefix: str
) -> None:
    team = await make_team(client, db)
    ids, tokens = team["ids"], team["tokens"]
    free = await conversation(db, 1, None)

    async def patch(token: str, body: Any, cid: int = free) -> Any:
        return await client.patch(f"/api/conversations/{cid}", json=body, headers=auth(token))

    # An operator takes a free conversation, but cannot hand it to a colleague.
    taken = await patch(tokens["olga"], {"assignee_id": ids["olga"]})
    assert taken.status == 200 and (await taken.json())["assignee_id"] == ids["olga"]
    handed = await patch(tokens["olga"], {"assignee_id": ids["ivan"]})
    assert handed.status == 403
    assert "only to themselves" in (await handed.json())["error"]
    # Ivan no longer sees it; the manager hands it within the team but not outside it.
    assert (await patch(tokens["ivan"], {"status": "closed"})).status == 403
    outside = await patch(tokens["manager"], {"assignee_id": ids["ivan"]})
    assert outside.status == 403 and "not in your team" in (await outside.json())["error"]
    closed = await patch(tokens["manager"], {"status": "closed", "assignee_id": ids["manager"]})
    assert closed.status == 200
    assert (await closed.json())["status"] == "closed"
    # Bad input changes nothing.
    for body in (
        {"status": "archived"},
        {"assignee_id": "olga"},
        {"assignee_id": True},
        {"colour": "red"},
        {},
        [],
    ):
        response = await patch(tokens["admin"], body)
        assert response.status == 400, body
        assert (await response.json())["error"]
    gone = await patch(tokens["admin"], {"assignee_id": 999999})
    assert gone.status == 400 and (await gone.json())["field"] == "assignee_id"
    assert (await patch(tokens["admin"], {"status": "open"}, cid=999999)).status == 404
    async with db.read() as session:
        row = await session.get_one(Conversation, free)
        assert (row.status, row.assignee_id) == ("closed", ids["manager"])
    # conversation.updated went out for each change.
    import redis.asyncio as aioredis

    from tests.conftest import TEST_REDIS_URL

    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        entries = await redis.xrange(f"{redis_prefix}events")
    finally:
        await redis.aclose()
    updates = [e for _, e in entries if b'"conversation.updated"' in e[b"event"]]
    assert len(updates) == 2


async def test_operator_cannot_delete_and_admin_can(client: Client, db: Database) -> None:
    team = await make_team(client, db)
    tokens = team["tokens"]
    cid = await conversation(db, 1, None)
    async with db.read() as session:
        contact_id = (await session.get_one(Conversation, cid)).contact_id
    for token in (tokens["olga"], tokens["manager"]):
        for path in (f"/api/conversations/{cid}", f"/api/contacts/{contact_id}"):
            response = await client.delete(path, headers=auth(token))
            assert response.status == 403
            assert "needs the admin role" in (await response.json())["error"]
    deleted = await client.delete(f"/api/conversations/{cid}", headers=auth(tokens["admin"]))
    assert deleted.status == 200
    assert (await deleted.json())["deleted"] == {"conversation_id": cid, "items": 1}
    assert (
        await client.get(f"/api/conversations/{cid}", headers=auth(tokens["admin"]))
    ).status == 404
    again = await client.delete(f"/api/conversations/{cid}", headers=auth(tokens["admin"]))
    assert again.status == 404
    async with db.read() as session:
        actions = [a.action for a in await session.scalars(select(AuditEntry))]
    assert actions.count("conversation.delete.denied") == 2
    assert actions.count("contact.delete.denied") == 2
    assert actions.count("conversation.delete") == 1


async def test_inactive_users_tokens_stop_working(client: Client, db: Database) -> None:
    team = await make_team(client, db)
    async with db.write() as session:
        user = await session.scalar(select(User).where(User.email == "ivan@example.com"))
        assert user is not None
        user.active = False
    response = await client.get("/api/conversations", headers=auth(team["tokens"]["ivan"]))
    assert response.status == 401
