"""Conversation list: filters and cursor paging, within what the user may see."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import Conversation, User
from tests.conftest import auth

Client = TestClient[Any, Any]


async def test_filters_and_pages_see_only_what_is_visible(
    client: Client, db: Database, token: str
) -> None:
    ids = []
    for n in range(7):
        result = await ingest(
            db,
            InboundEvent(
                channel="sms",
                channel_type="twilio",
                external_id=f"SM{n}",
                source="sms",
                sender=Sender(phones=(f"+99890123450{n}",), name=f"Client {n}"),
                text="hi",
            ),
            "UZ",
        )
        ids.append(result.conversation_id)
    async with db.write() as session:
        me = await session.scalar(select(User.id).where(User.email == "op@example.com"))
        other = User(email="x@example.com", name="X", role="operator", password_hash="-")
        session.add(other)
        await session.flush()
        for cid, assignee, status in (
            (ids[0], me, "closed"),
            (ids[1], me, "open"),
            (ids[2], other.id, "open"),  # not visible to op
        ):
            row = await session.get_one(Conversation, cid)
            row.assignee_id, row.status = assignee, status

    async def get(**params: str) -> Any:
        response = await client.get("/api/conversations", params=params, headers=auth(token))
        assert response.status == 200, await response.text()
        return await response.json()

    visible = [c for c in reversed(ids) if c != ids[2]]  # newest first
    seen: list[int] = []
    cursor = ""
    while True:
        page = await get(limit="2", **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == visible
    assert page["items"][-1]["contact_name"] == "Client 0"
    assert [c["id"] for c in (await get(assignee="me"))["items"]] == [ids[1], ids[0]]
    assert [c["id"] for c in (await get(assignee="me", status="open"))["items"]] == [ids[1]]
    assert ids[2] not in [c["id"] for c in (await get(status="open"))["items"]]
    assert len((await get(assignee="none"))["items"]) == 4
    assert (await get(channel="support"))["items"] == []
    async with db.read() as session:
        contact_id = (await session.get_one(Conversation, ids[3])).contact_id
    assert [c["id"] for c in (await get(contact_id=str(contact_id)))["items"]] == [ids[3]]
    for bad in (
        {"status": "archived"},
        {"assignee": "someone"},
        {"limit": "0"},
        {"limit": "1000"},
        {"cursor": "bm90IGpzb24"},
        {"contact_id": "x"},
    ):
        response = await client.get("/api/conversations", params=bad, headers=auth(token))
        assert response.status == 400, bad
        assert (await response.json())["error"]
