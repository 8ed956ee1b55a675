"""POST /forms/{id}: the acceptance cases of the foundation issue, over a real connection."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.db import Database
from hub.models import Contact, Identity, InboundReceipt, Lead, TimelineItem
from tests.conftest import count

Client = TestClient[Any, Any]
ORIGIN = "https://shop.example.com"


async def totals(db: Database) -> tuple[int, int, int, int]:
    return (
        await count(db, Contact),
        await count(db, Lead),
        await count(db, TimelineItem),
        await count(db, InboundReceipt),
    )


async def test_two_formats_of_one_phone_make_one_contact_one_lead_two_items(
    client: Client, db: Database
) -> None:
    first = await client.post(
        "/forms/callback",
        data={
            "name": "Dilnoza",
            "phone": "+998 90 123 45 67",
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": "spring",
        },
        headers={"Accept": "application/json"},
    )
    assert first.status == 201, await first.text()
    one = await first.json()
    second = await client.post(
        "/forms/callback",
        json={"phone": "901234567", "email": "Dilnoza@Example.COM", "message": "call me"},
    )
    assert second.status == 201, await second.text()
    two = await second.json()
    assert one["contact_id"] == two["contact_id"]
    assert one["lead_id"] == two["lead_id"]
    assert await totals(db) == (1, 1, 2, 2)
    async with db.read() as session:
        identities = {(i.kind, i.value) for i in await session.scalars(select(Identity))}
        lead = await session.get_one(Lead, one["lead_id"])
    assert identities == {("phone", "+998901234567"), ("email", "dilnoza@example.com")}
    assert (lead.source, lead.form_id, lead.channel) == ("form", "callback", "callback")
    assert (lead.utm_source, lead.utm_medium, lead.utm_campaign) == ("google", "cpc", "spring")


async def test_twenty_concurrent_posts_with_one_idempotency_key_store_once(
    client: Client, db: Database
) -> None:
    body = {"name": "Anvar", "phone": "+998 93 555 12 34"}
    headers = {"Idempotency-Key": "submission-0001-abcdef"}
    answers = await asyncio.gather(
        *(client.post("/forms/callback", json=body, headers=headers) for _ in range(20))
    )
    bodies = [await a.json() for a in answers]
    assert {a.status for a in answers} == {201}
    assert len({(b["lead_id"], b["contact_id"], b["item_id"]) for b in bodies}) == 1
    assert sum(not b["duplicate"] for b in bodies) == 1
    assert await totals(db) == (1, 1, 1, 1)


async def test_bad_input_is_refused_with_a_reason_and_changes_nothing(
    make_client: Any, db: Database
) -> None:
    client = await make_client()
    cases: list[tuple[str, dict[str, Any], int, str | None]] = [
        ("/forms/nope", {"json": {"phone": "+998901234567"}}, 404, None),
        (
            "/forms/callback",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            None,
        ),
        ("/forms/callback", {"json": ["a", "list"]}, 400, None),
        ("/forms/callback", {"json": {"phone": "12"}}, 400, "phone"),
        (
            "/forms/callback",
            {"json": {"phone": "+998901234567", "email": "not-an-email"}},
            400,
            "email",
        ),
        ("/forms/callback", {"json": {"name": "No phone"}}, 400, "phone"),
        ("/forms/callback", {"json": {"phone": "+998901234567", "message": "x" * 5000}}, 413, None),
        (
            "/forms/callback",
            {"data": b"phone=1", "headers": {"Content-Type": "text/csv"}},
            400,
            None,
        ),
        (
            "/forms/callback",
            {"json": {"phone": "+998901234567"}, "headers": {"Origin": "https://evil.example.net"}},
            403,
            None,
        ),
        (
            "/forms/callback",
            {"json": {"phone": "+998901234567"}, "headers": {"Idempotency-Key": "bad key!"}},
            400,
            "Idempotency-Key",
        ),
    ]
    for path, kwargs, status, field in cases:
        response = await client.post(path, **kwargs)
        assert response.status == status, (path, kwargs, await response.text())
        assert response.content_type == "application/json"
        answer = await response.json()
        assert answer["error"], answer
        if field is not None:
            assert answer["field"] == field
        assert "Access-Control-Allow-Origin" not in response.headers
    assert await totals(db) == (0, 0, 0, 0)


async def test_too_many_posts_get_429_with_retry_after_and_store_nothing_more(
    make_client: Any, db: Database, settings: Any
) -> None:
    from dataclasses import replace

    form = replace(settings.forms["callback"], rate_limit="3/minute")
    client = await make_client(forms={"callback": form})
    statuses = []
    for n in range(5):
        response = await client.post(
            "/forms/callback", json={"phone": f"+99890123456{n}"}, headers={"Origin": ORIGIN}
        )
        statuses.append(response.status)
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "too many" in (await response.json())["error"]
    assert statuses == [201, 201, 201, 429, 429]
    assert await count(db, Lead) == 3


async def test_honeypot_is_answered_like_success_and_stores_nothing(
    client: Client, db: Database
) -> None:
    response = await client.post(
        "/forms/callback", json={"phone": "+998901234567", "_gotcha": "http://spam.example"}
    )
    assert response.status == 201
    assert await totals(db) == (0, 0, 0, 0)


async def test_cors_preflight_and_headers_only_for_allowed_origins(client: Client) -> None:
    allowed = await client.options(
        "/forms/callback",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Idempotency-Key" in allowed.headers["Access-Control-Allow-Headers"]
    foreign = await client.options(
        "/forms/callback",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert foreign.status == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers
    posted = await client.post(
        "/forms/callback", json={"phone": "+998901234567"}, headers={"Origin": ORIGIN}
    )
    assert posted.status == 201
    assert posted.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_plain_html_post_redirects_to_success_url_and_keeps_extras(
    client: Client, db: Database
) -> None:
    response = await client.post(
        "/forms/callback",
        data={"phone": "+998 90 765 43 21", "product": "Sofa", "utm_source": "instagram"},
        headers={"Accept": "text/html,application/xhtml+xml"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "https://shop.example.com/thanks"
    async with db.read() as session:
        contact = await session.scalar(select(Contact))
    assert contact is not None


async def test_extra_fields_become_custom_fields_and_the_timeline_shows_the_form(
    client: Client, db: Database
) -> None:
    response = await client.post(
        "/forms/callback",
        json={
            "phone": "+998901234567",
            "name": "Bobur",
            "product": "Sofa",
            "page_url": "https://shop.example.com/sofa?utm_source=x",
            "message": "Is it in stock?",
        },
    )
    answer = await response.json()
    async with db.read() as session:
        contact = await session.get_one(Contact, answer["contact_id"])
        item = await session.get_one(TimelineItem, answer["item_id"])
    assert contact.custom_fields == {"product": "Sofa"}
    assert contact.name == "Bobur"
    assert (item.kind, item.direction, item.channel_type, item.text) == (
        "form",
        "in",
        "form",
        "Is it in stock?",
    )
    assert item.meta["page_url"] == "https://shop.example.com/sofa?utm_source=x"
    assert json.dumps(item.meta)  # serialisable as stored


async def test_embed_script_carries_the_form_configuration(client: Client) -> None:
    response = await client.get("/forms/callback/embed.js")
    assert response.status == 200
    assert response.content_type == "application/javascript"
    script = await response.text()
    assert "__HUB_FORM_CONFIG__" not in script
    assert '"id": "callback"' in script
    assert "/forms/callback" in script
    missing = await client.get("/forms/nope/embed.js")
    assert missing.status == 404


async def test_home_page_lists_forms_with_their_snippet(client: Client) -> None:
    response = await client.get("/forms")
    assert response.status == 200
    page = await response.text()
    assert 'href="/forms/callback"' in page
    assert "/forms/callback/embed.js" in page
