"""The read API and login: bearer tokens, contacts in any phone format, timeline, merge, audit."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import AuditEntry, Contact, Lead, TimelineItem
from tests.conftest import PASSWORD, auth, count, sms_event

Client = TestClient[Any, Any]


async def seed(db: Database) -> dict[str, Any]:
    sms = await ingest(db, sms_event("SM1", "+998901234567"), "UZ")
    form = await ingest(
        db,
        InboundEvent(
            channel="callback",
            channel_type="form",
            external_id="idem:1",
            kind="form",
            source="form",
            form_id="callback",
            text="call me",
            sender=Sender(phones=("90 123 45 67",), emails=("dilnoza@example.com",)),
        ),
        "UZ",
    )
    other = await ingest(
        db,
        InboundEvent(
            channel="support",
            channel_type="email",
            external_id="<x@y>",
            source="email",
            sender=Sender(emails=("d.karimova@example.org",), name="D. Karimova"),
            text="Hi",
        ),
        "UZ",
    )
    return {"sms": sms, "form": form, "other": other}


async def test_login_failures_are_401_audited_and_rate_limited(
    client: Client, db: Database
) -> None:
    async with db.write() as session:
        await create_user(session, "op@example.com", PASSWORD, "operator")
    wrong = await client.post("/api/auth/login", json={"email": "op@example.com", "password": "x"})
    assert wrong.status == 401 and (await wrong.json())["error"] == "wrong e-mail or password"
    unknown = await client.post(
        "/api/auth/login", json={"email": "no@example.com", "password": "x"}
    )
    assert unknown.status == 401
    missing = await client.post("/api/auth/login", json={"email": "op@example.com"})
    assert missing.status == 400 and (await missing.json())["field"] == "password"
    malformed = await client.post(
        "/api/auth/login", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400
    async with db.read() as session:
        actions = [a.action for a in await session.scalars(select(AuditEntry))]
    assert actions.count("auth.login_failed") == 2
    statuses = [
        (
            await client.post("/api/auth/login", json={"email": "x@example.com", "password": "x"})
        ).status
        for _ in range(10)
    ]
    assert statuses[-1] == 429


async def test_api_needs_a_live_token(client: Client, token: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = await client.get("/api/contacts", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]
    assert (await client.get("/api/contacts", headers=auth(token))).status == 200
    assert (await client.post("/api/auth/logout", headers=auth(token))).status == 200
    assert (await client.get("/api/contacts", headers=auth(token))).status == 401


async def test_contacts_found_by_phone_in_any_format_and_email(
    client: Client, db: Database, token: str
) -> None:
    data = await seed(db)
    contact_id = data["sms"].contact_id
    for phone in ("+998 90 123 45 67", "8 (90) 123-45-67", "998901234567", "901234567"):
        response = await client.get("/api/contacts", params={"phone": phone}, headers=auth(token))
        items = (await response.json())["items"]
        assert [c["id"] for c in items] == [contact_id], phone
    by_mail = await client.get(
        "/api/contacts", params={"email": "Dilnoza@Example.com"}, headers=auth(token)
    )
    assert [c["id"] for c in (await by_mail.json())["items"]] == [contact_id]
    by_name = await client.get("/api/contacts", params={"q": "karimova"}, headers=auth(token))
    assert [c["id"] for c in (await by_name.json())["items"]] == [data["other"].contact_id]
    one = await (await client.get(f"/api/contacts/{contact_id}", headers=auth(token))).json()
    assert one["phones"] == ["+998901234567"]
    assert one["emails"] == ["dilnoza@example.com"]
    assert one["name"] == "Dilnoza"
    assert set(one) >= {
        "id",
        "name",
        "phones",
        "emails",
        "telegram",
        "tags",
        "custom_fields",
        "company",
        "created_at",
    }
    assert len(one["leads"]) == 1
    missing = await client.get("/api/contacts/999999", headers=auth(token))
    assert missing.status == 404
    bad = await client.get("/api/contacts/abc", headers=auth(token))
    assert bad.status == 400


async def test_timeline_merges_channels_oldest_first(
    client: Client, db: Database, token: str
) -> None:
    data = await seed(db)
    response = await client.get(
        f"/api/contacts/{data['sms'].contact_id}/timeline", headers=auth(token)
    )
    items = (await response.json())["items"]
    assert [(i["channel_type"], i["kind"]) for i in items] == [
        ("twilio", "message"),
        ("form", "form"),
    ]
    keys = {
        "id",
        "conversation_id",
        "contact_id",
        "channel",
        "channel_type",
        "direction",
        "kind",
        "text",
        "attachments",
        "status",
        "external_id",
        "created_at",
        "meta",
    }
    assert keys <= set(items[0])


async def test_conversations_and_messages_page_with_cursors(
    client: Client, db: Database, token: str
) -> None:
    for n in range(5):
        await ingest(
            db,
            InboundEvent(
                channel="sms",
                channel_type="twilio",
                external_id=f"SM{n}",
                source="sms",
                sender=Sender(phones=(f"+99890123450{n}",)),
                text=f"m{n}",
            ),
            "UZ",
        )
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await (
            await client.get("/api/conversations", params=params, headers=auth(token))
        ).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)  # newest message first
    forged = base64.urlsafe_b64encode(b'["x"]').decode()
    for path in (f"/api/conversations/{seen[0]}/messages", "/api/leads", "/api/contacts"):
        bad = await client.get(path, params={"cursor": forged}, headers=auth(token))
        assert bad.status == 400, path
    messages = await (
        await client.get(f"/api/conversations/{seen[0]}/messages", headers=auth(token))
    ).json()
    assert [m["text"] for m in messages["items"]] == ["m4"]
    for params in (
        {"limit": "501"},
        {"limit": "0"},
        {"cursor": "!!"},
        {"cursor": forged},
        {"status": "weird"},
    ):
        bad = await client.get("/api/conversations", params=params, headers=auth(token))
        assert bad.status == 400, params
    unassigned = await client.get(
        "/api/conversations", params={"assignee": "none", "status": "open"}, headers=auth(token)
    )
    assert len((await unassigned.json())["items"]) == 5


async def test_leads_filter(client: Client, db: Database, token: str) -> None:
    await seed(db)
    forms = await (
        await client.get("/api/leads", params={"source": "form"}, headers=auth(token))
    ).json()
    sms = await (
        await client.get("/api/leads", params={"source": "sms"}, headers=auth(token))
    ).json()
    assert forms["items"] == [] and len(sms["items"]) == 1  # the form joined the SMS lead
    assert set(sms["items"][0]) >= {
        "id",
        "contact_id",
        "source",
        "channel",
        "form_id",
        "utm",
        "pipeline",
        "stage",
        "status",
        "lost_reason",
        "assignee_id",
        "created_at",
        "first_response_at",
    }


async def test_merge_moves_everything_keeps_one_open_lead_and_is_audited(
    client: Client, db: Database, token: str
) -> None:
    data = await seed(db)
    keep, other = data["sms"].contact_id, data["other"].contact_id
    response = await client.post(
        f"/api/contacts/{keep}/merge", json={"other_id": other}, headers=auth(token)
    )
    assert response.status == 200, await response.text()
    merged = await response.json()
    assert set(merged["emails"]) == {"dilnoza@example.com", "d.karimova@example.org"}
    assert await count(db, TimelineItem, TimelineItem.contact_id == keep) == 3
    assert await count(db, Lead, Lead.status == "open") == 1
    assert await count(db, Lead, Lead.contact_id == keep) == 1
    async with db.read() as session:
        gone = await session.get_one(Contact, other)
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "contact.merge"))
    assert gone.merged_into_id == keep
    assert audit is not None and audit.meta["merged_id"] == other and audit.ip
    listed = await (await client.get("/api/contacts", headers=auth(token))).json()
    assert [c["id"] for c in listed["items"]] == [keep]
    again = await client.post(
        f"/api/contacts/{keep}/merge", json={"other_id": other}, headers=auth(token)
    )
    assert again.status == 400
    self_merge = await client.post(
        f"/api/contacts/{keep}/merge", json={"other_id": keep}, headers=auth(token)
    )
    assert self_merge.status == 400
    nobody = await client.post(
        f"/api/contacts/{keep}/merge", json={"other_id": 424242}, headers=auth(token)
    )
    assert nobody.status == 404
