"""The embed script in a real browser: a third-party page (another origin) shows the hub's form,
and what the visitor submits lands in the database with the page's UTM, once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from hub.db import Database
from hub.models import Contact, Identity, Lead, TimelineItem
from tests.browser import expect
from tests.conftest import CALLBACK_FORM, count

UTM_QUERY = "?utm_source=google&utm_medium=cpc&utm_campaign=spring"
SUCCESS = "Thank you! We will call you back soon."
PHONE_E164 = "+998901234567"
LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>Spring sale</title></head>
<body style="font-family: Georgia, serif; margin: 1rem">
<h1>Spring sale: sofas -30%</h1>
<p>Leave your number and our manager will call you back.</p>
<div data-hub-form="callback"></div>
<script src="{hub}/forms/callback/embed.js"></script>
</body></html>"""
# Collects the hub:submitted events (they bubble from the form's div) for the assertions.
RECORD_EVENTS = """
window.__hubSubmitted = [];
document.addEventListener("hub:submitted", (e) => window.__hubSubmitted.push(e.detail));
"""


@dataclass
class Site:
    hub: str  # the hub's base URL, serving embed.js and taking the posts
    allowed: str  # origin of a shop page the form allows
    foreign: str  # origin of a page the form does not allow


@pytest.fixture
async def site(make_client: Any) -> AsyncIterator[Site]:
    """A tiny landing-page server on two ports (two origins) and the real hub on a third."""
    hub: dict[str, str] = {}

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text=LANDING.format(hub=hub["url"]), content_type="text/html")

    app = web.Application()
    app.router.add_get("/landing", landing)
    runner = web.AppRunner(app)
    await runner.setup()
    origins = []
    for _ in range(2):
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        origins.append(f"http://127.0.0.1:{runner.addresses[-1][1]}")
    allowed, foreign = origins
    form = replace(CALLBACK_FORM, allowed_origins=(allowed,))
    client = await make_client(forms={"callback": form})
    hub["url"] = str(client.make_url("")).rstrip("/")
    try:
        yield Site(hub=hub["url"], allowed=allowed, foreign=foreign)
    finally:
        await runner.cleanup()


async def open_landing(browser: Any, origin: str) -> tuple[Any, list[str]]:
    """A phone-sized page on `origin` with the form rendered; page errors are collected."""
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
    await context.add_init_script(RECORD_EVENTS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{origin}/landing{UTM_QUERY}")
    await expect(page.locator("[data-hub-form=callback] form")).to_have_count(1)
    return page, errors


def submit_button(page: Any) -> Any:
    return page.get_by_role("button", name="Send")


def status(page: Any) -> Any:
    return page.locator("[data-hub-form=callback] [role=status]")


async def stored(db: Database) -> tuple[int, int, int]:
    return await count(db, Contact), await count(db, Lead), await count(db, TimelineItem)


async def test_a_visitor_on_an_allowed_page_leaves_a_lead_with_the_page_utm(
    browser: Any, site: Site, db: Database
) -> None:
    page, errors = await open_landing(browser, site.allowed)
    await page.get_by_label("Name", exact=True).fill("Dilnoza")
    await page.get_by_label("Phone").fill("+998 90 123-45-67")
    await page.get_by_label("E-mail").fill("Dilnoza@Example.com")
    await submit_button(page).click()

    await expect(status(page)).to_have_text(SUCCESS)
    await expect(page.locator("[data-hub-form=callback] form")).to_have_count(0)
    answers = await page.evaluate("window.__hubSubmitted")
    assert len(answers) == 1 and answers[0]["lead_id"], answers
    assert errors == []

    assert await stored(db) == (1, 1, 1)
    async with db.read() as session:
        lead = await session.scalar(select(Lead))
        phones = list(await session.scalars(select(Identity.value).where(Identity.kind == "phone")))
        item = await session.scalar(select(TimelineItem))
    assert lead is not None and item is not None
    assert lead.id == answers[0]["lead_id"]
    assert (lead.source, lead.form_id) == ("form", "callback")
    assert (lead.utm_source, lead.utm_medium, lead.utm_campaign) == ("google", "cpc", "spring")
    assert phones == [PHONE_E164]
    assert item.meta["page_url"] == f"{site.allowed}/landing{UTM_QUERY}"


async def test_a_bad_phone_shows_the_hub_error_next_to_the_phone_field(
    browser: Any, site: Site, db: Database
) -> None:
    page, errors = await open_landing(browser, site.allowed)
    await page.get_by_label("Name", exact=True).fill("Anvar")
    phone = page.get_by_label("Phone")
    await phone.fill("12")
    await submit_button(page).click()

    field_error = page.locator("[data-hub-form=callback] input[name=phone] + .hub-form__error")
    await expect(field_error).to_contain_text("not a valid phone number")
    await expect(phone).to_have_attribute("aria-invalid", "true")
    await expect(phone).to_have_attribute("aria-describedby", re.compile(r"\S"))
    described = await phone.get_attribute("aria-describedby")
    assert await field_error.get_attribute("id") == described
    await expect(phone).to_be_focused()
    await expect(phone).to_have_value("12")  # the visitor's input is kept
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Anvar")
    await expect(submit_button(page)).to_be_enabled()
    await page.screenshot(path="/tmp/embed.png", full_page=True)
    assert errors == []
    assert await stored(db) == (0, 0, 0)

    # Editing the field clears its error; a fixed number then goes through.
    await phone.fill(PHONE_E164)
    await expect(field_error).to_be_empty()
    await submit_button(page).click()
    await expect(status(page)).to_have_text(SUCCESS)
    assert await stored(db) == (1, 1, 1)


async def test_a_page_on_an_origin_the_form_does_not_allow_cannot_submit(
    browser: Any, site: Site, db: Database
) -> None:
    page, _ = await open_landing(browser, site.foreign)
    await page.get_by_label("Phone").fill(PHONE_E164)
    await submit_button(page).click()

    # The preflight is refused, so the browser blocks the post: the form says it could not send.
    await expect(status(page)).to_contain_text("Could not send")
    await expect(page.get_by_label("Phone")).to_have_value(PHONE_E164)
    assert await page.evaluate("window.__hubSubmitted") == []
    assert await stored(db) == (0, 0, 0)


async def test_a_double_click_on_submit_stores_one_submission(
    browser: Any, site: Site, db: Database
) -> None:
    page, errors = await open_landing(browser, site.allowed)
    posts: list[Any] = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
    await page.get_by_label("Phone").fill(PHONE_E164)
    await submit_button(page).dblclick()

    await expect(status(page)).to_have_text(SUCCESS)
    for request in posts:  # every post that left the browser has been answered
        await request.response()
    assert len(posts) >= 1
    assert errors == []
    assert await stored(db) == (1, 1, 1)


async def test_a_retry_after_a_lost_answer_reuses_the_idempotency_key(
    browser: Any, site: Site, db: Database
) -> None:
    """The hub stores the first post but its answer never reaches the page (the connection
    drops): the visitor clicks again, the same key goes out, and the hub stores nothing new."""
    page, errors = await open_landing(browser, site.allowed)
    keys: list[str] = []

    async def lose_first_answer(route: Any) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key", ""))
        if len(keys) == 1:
            delivered = await route.fetch()
            assert delivered.status == 201
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route(f"{site.hub}/forms/callback", lose_first_answer)
    await page.get_by_label("Phone").fill(PHONE_E164)
    await submit_button(page).click()
    await expect(status(page)).to_contain_text("Could not send")
    assert await stored(db) == (1, 1, 1)  # it did arrive

    await submit_button(page).click()
    await expect(status(page)).to_have_text(SUCCESS)
    answers = await page.evaluate("window.__hubSubmitted")
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    assert answers[0]["duplicate"] is True
    assert errors == []
    assert await stored(db) == (1, 1, 1)


async def test_a_bot_filling_the_honeypot_sees_success_and_nothing_is_stored(
    browser: Any, site: Site, db: Database
) -> None:
    page, _ = await open_landing(browser, site.allowed)
    honeypot = page.locator("[data-hub-form=callback] input[name=_gotcha]")
    assert await honeypot.get_attribute("tabindex") == "-1"
    await honeypot.evaluate("(el) => { el.value = 'http://spam.example'; }")
    await page.get_by_label("Phone").fill(PHONE_E164)
    await submit_button(page).click()

    await expect(status(page)).to_have_text(SUCCESS)
    assert await stored(db) == (0, 0, 0)
