"""Contact edit, duplicate suggestions and the admin-only delete."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import AuditEntry, Contact, Conversation, Identity, Lead, TimelineItem
from tests.conftest import PASSWORD, auth, count, sms_event

Client = TestClient[Any, Any]


async def sms(db: Database, n: int, phone: str, name: str) -> int:
    result = await ingest(db, sms_event(f"SM{n}", phone, name, "hi"), "UZ")
    assert result.contact_id is not None
    return result.contact_id


async def admin_token(client: Client, db: Database) -> str:
    async with db.write() as session:
        await create_user(session, "root@example.com", PASSWORD, "admin")
    response = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    return str((await response.json())["token"])


async def test_patch_contact_fields_and_identities(
    client: Client, db: Database, token: str
) -> None:
    contact_id = await sms(db, 1, "+998901234567", "Dilnoza")
    other_id = await sms(db, 2, "+998907654321", "Aziz")
    url = f"/api/contacts/{contact_id}"
    response = await client.patch(
        url,
        json={
            "name": "Dilnoza Karimova",
            "company": "Karimov & Co",
            "tags": ["vip", "vip ", "wholesale"],
            "custom_fields": {"city": "Tashkent", "floors": 3},
            "add_phones": ["8 (90) 111-22-33"],
            "add_emails": ["Dilnoza@Example.COM"],
        },
        headers=auth(token),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["name"] == "Dilnoza Karimova" and body["company"] == "Karimov & Co"
    assert body["tags"] == ["vip", "wholesale"]
    assert body["custom_fields"] == {"city": "Tashkent", "floors": 3}
    assert body["phones"] == ["+998901234567", "+998901112233"]
    assert body["emails"] == ["dilnoza@example.com"]
    # Found by the new phone, written another way.
    found = await client.get("/api/contacts", params={"phone": "90 111 22 33"}, headers=auth(token))
    assert [c["id"] for c in (await found.json())["items"]] == [contact_id]
    # Adding what it has already is harmless; clearing the company works.
    again = await client.patch(
        url, json={"add_phones": ["+998901112233"], "company": None}, headers=auth(token)
    )
    assert again.status == 200 and (await again.json())["company"] is None

    # Someone else's phone: 409 naming them, nothing changed.
    taken = await client.patch(
        url, json={"name": "X", "add_phones": ["+998 90 765 43 21"]}, headers=auth(token)
    )
    assert taken.status == 409
    taken_body = await taken.json()
    assert taken_body["contact_id"] == other_id and "merge" in taken_body["error"]
    for bad in (
        {"add_phones": ["not a phone"]},
        {"add_emails": ["nobody@"]},
        {"tags": "vip"},
        {"tags": [""]},
        {"custom_fields": {"a": {"nested": 1}}},
        {"custom_fields": []},
        {"name": 5},
        {"name": "x" * 201},
        {"colour": "red"},
        {},
    ):
        response = await client.patch(url, json=bad, headers=auth(token))
        assert response.status == 400, bad
        assert (await response.json())["error"]
    assert (
        await client.patch("/api/contacts/99999", json={"name": "x"}, headers=auth(token))
    ).status == 404
    async with db.read() as session:
        contact = await session.get_one(Contact, contact_id)
        assert contact.name == "Dilnoza Karimova"
        assert await count(db, Identity, Identity.contact_id == contact_id) == 3
        audits = list(await session.scalars(select(AuditEntry.action)))
    assert audits.count("contact.update") == 2


async def test_duplicates_listed_and_merged(client: Client, db: Database, token: str) -> None:
    first = await sms(db, 1, "+998901234567", "Dilnoza")
    second = await ingest(
        db,
        InboundEvent(
            channel="support",
            channel_type="email",
            external_id="<a@b>",
            source="email",
            sender=Sender(emails=("d@example.com",), name="D"),
            text="Hi",
        ),
        "UZ",
    )
    third = await sms(db, 3, "+998905555555", "Aziz")
    # A form claims the phone of one and the e-mail of the other: a suggestion, not a merge.
    await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:1",
            kind="form",
            source="form",
            form_id="callback",
            sender=Sender(phones=("+998901234567",), emails=("d@example.com",)),
            text="call me",
        ),
        "UZ",
    )
    response = await client.get(f"/api/contacts/{first}/duplicates", headers=auth(token))
    assert response.status == 200
    items = (await response.json())["items"]
    assert [i["other_id"] for i in items] == [second.contact_id]
    assert items[0]["other"]["emails"] == ["d@example.com"] and items[0]["status"] == "open"
    mirror = await client.get(f"/api/contacts/{second.contact_id}/duplicates", headers=auth(token))
    assert [i["other_id"] for i in (await mirror.json())["items"]] == [first]
    bad = await client.get(
        f"/api/contacts/{first}/duplicates", params={"status": "x"}, headers=auth(token)
    )
    assert bad.status == 400
    suggestion = items[0]["id"]
    stranger = await client.post(
        f"/api/contacts/{third}/duplicates/{suggestion}/dismiss", headers=auth(token)
    )
    assert stranger.status == 404  # not a suggestion of that contact
    dismissed = await client.post(
        f"/api/contacts/{second.contact_id}/duplicates/{suggestion}/dismiss", headers=auth(token)
    )
    assert dismissed.status == 200
    assert (await dismissed.json())["status"] == "dismissed"
    assert (await dismissed.json())["other_id"] == first
    still_open = await client.get(f"/api/contacts/{first}/duplicates", headers=auth(token))
    assert (await still_open.json())["items"] == []
    every = await client.get(
        f"/api/contacts/{first}/duplicates", params={"status": "all"}, headers=auth(token)
    )
    assert [i["status"] for i in (await every.json())["items"]] == ["dismissed"]
    merged = await client.post(
        f"/api/contacts/{first}/merge", json={"other_id": second.contact_id}, headers=auth(token)
    )
    assert merged.status == 200
    assert (await merged.json())["emails"] == ["d@example.com"]


async def test_admin_deletes_a_contact_with_everything(
    client: Client, db: Database, token: str
) -> None:
    keep = await sms(db, 1, "+998901234567", "Dilnoza")
    other = await sms(db, 2, "+998907654321", "Dilnoza 2")
    bystander = await sms(db, 3, "+998901111111", "Aziz")
    merged = await client.post(
        f"/api/contacts/{keep}/merge", json={"other_id": other}, headers=auth(token)
    )
    assert merged.status == 200
    operator = await client.delete(f"/api/contacts/{keep}", headers=auth(token))
    assert operator.status == 403
    admin = await admin_token(client, db)
    response = await client.delete(f"/api/contacts/{keep}", headers=auth(admin))
    assert response.status == 200, await response.text()
    deleted = (await response.json())["deleted"]
    assert deleted["contact_id"] == keep and deleted["merged_contacts"] == 1
    assert deleted["items"] == 2 and deleted["leads"] == 1
    for model in (Contact, Identity, Conversation, TimelineItem, Lead):
        column = model.id if model is Contact else model.contact_id
        assert await count(db, model, column.in_((keep, other))) == 0, model
    assert await count(db, Contact, Contact.id == bystander) == 1
    assert (await client.delete(f"/api/contacts/{keep}", headers=auth(admin))).status == 404
    assert (await client.delete("/api/contacts/abc", headers=auth(admin))).status == 400
    async with db.read() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "contact.delete")
        )
    assert entry is not None and entry.target_id == str(keep) and entry.ip == "127.0.0.1"
