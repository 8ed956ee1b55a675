"""The web inbox in a real Chromium against the real hub: log in, a Telegram conversation arrives
live from the webhook, a reply goes out through the worker to a fake Bot API and its delivery
status updates, the contact, the leads board, reminders, the caller card; hostile text stays
text, mail HTML stays in a sandbox, and every page runs under a strict CSP."""

from __future__ import annotations

import io
import os
import re
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.auth.users import create_user
from hub.db import Database
from hub.inbox.attachments import store_bytes, stored_fields
from hub.inbox.calls import caller_card
from hub.inbox.live import LiveEvent, publish
from hub.models import Conversation, Lead, Reminder, TimelineItem
from hub.runtime import Runtime
from hub.settings import Settings
from tests.browser import expect
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import config, payload
from tests.conftest import PASSWORD, MakeClient, count
from tests.webhooks.test_events import telegram, update_from
from tests.workers.test_deliver import run_worker

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LIVE = 10_000  # ms: a generous bound for live updates, not a speed measurement
TEXT = "Salom! Do you deliver to Tashkent?"
# Set HUB_SCREENSHOTS=docs to refresh the README's screenshots.
SCREENSHOTS = os.environ.get("HUB_SCREENSHOTS")


@dataclass
class Hub:
    client: TestClient[Any, Any]
    url: str
    settings: Settings
    api: FakeBotAPI

    async def deliver(self) -> None:
        """One burst of the real worker: sends what is queued to the fake Bot API."""
        runtime = Runtime.open(
            replace(self.settings, channels={"tg": config(api_base=self.api.base)})
        )
        try:
            await run_worker(runtime)
        finally:
            await runtime.close()


@pytest.fixture
async def hub(make_client: MakeClient, settings: Settings) -> AsyncIterator[Hub]:
    async with fake_bot_api() as api:
        channels = {"tg": config(api_base=api.base)}
        client = await make_client(channels=channels)
        yield Hub(
            client, str(client.make_url("")).rstrip("/"), replace(settings, channels=channels), api
        )


async def add_user(db: Database, email: str, role: str, name: str) -> None:
    async with db.write() as session:
        await create_user(session, email, PASSWORD, role, name)


async def logged_in(browser: Any, hub: Hub, email: str, viewport: dict[str, int] = DESKTOP) -> Any:
    """A new browser (own storage) logged in through the login page, with the live stream up."""
    context = await browser.new_context(viewport=viewport, locale="en-US")
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    await page.goto(f"{hub.url}/")
    await expect(page).to_have_url(f"{hub.url}/login")  # no token in this tab yet
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{hub.url}/")
    await expect(page.locator("#live")).to_have_text("live", timeout=LIVE)
    return page


def conversation_row(page: Any, name: str) -> Any:
    return page.locator("#conversations li", has_text=name)


def timeline_item(page: Any, text: str) -> Any:
    return page.locator("#timeline li.item", has_text=text)


async def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


async def test_a_wrong_password_is_refused_on_the_login_page(
    browser: Any, hub: Hub, db: Database
) -> None:
    await add_user(db, "op@example.com", "operator", "Olga")
    page = await (await browser.new_context(viewport=PHONE)).new_page()
    await page.goto(f"{hub.url}/login")
    await page.get_by_label("E-mail").fill("op@example.com")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("wrong e-mail or password")
    await expect(page).to_have_url(f"{hub.url}/login")
    assert await page.evaluate("sessionStorage.getItem('hub.token')") is None


async def test_ui_pages_carry_a_strict_csp_and_the_old_home_page_moved(hub: Hub) -> None:
    for path in ("/", "/login"):
        response = await hub.client.get(path)
        assert response.status == 200
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        page = await response.text()
        assert "<script>" not in page and " style=" not in page and " on" not in page.lower()
    script = await hub.client.get("/ui/static/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert ".innerHTML" not in await script.text()
    missing = await hub.client.get("/ui/static/nope.js")
    assert missing.status == 404 and "error" in await missing.json()
    forms = await hub.client.get("/forms")
    assert "/forms/callback/embed.js" in await forms.text()


async def test_an_operator_works_a_telegram_conversation_on_a_phone(
    browser: Any, hub: Hub, db: Database
) -> None:
    await add_user(db, "op@example.com", "operator", "Olga")
    page = await logged_in(browser, hub, "op@example.com", PHONE)

    # A Telegram message arrives through the real webhook and shows up without a reload.
    await telegram(hub.client, payload("text"))
    row = conversation_row(page, "Dilnoza")
    await expect(row).to_be_visible(timeout=LIVE)
    await expect(row.locator(".assignee")).to_have_text("unassigned")
    await expect(row.locator(".unread-count")).to_have_text("1")
    await expect(row.locator(".icon")).to_have_attribute("title", "telegram")
    await shot(page, "phone-list")

    await row.click()
    await expect(timeline_item(page, TEXT)).to_be_visible()
    await expect(page.locator("#conversations")).to_be_hidden()  # one pane at a time on a phone

    # Reply: queued at once, then sent by the worker through the fake Bot API, live.
    await page.get_by_label("Reply").fill("Yes, tomorrow!")
    await page.get_by_role("button", name="Send").click()
    reply = timeline_item(page, "Yes, tomorrow!")
    await expect(reply.locator(".delivery")).to_have_text("queued", timeout=LIVE)
    await hub.deliver()
    await expect(reply.locator(".delivery")).to_have_text("sent", timeout=LIVE)
    assert [c.params["text"] for c in hub.api.sent()] == ["Yes, tomorrow!"]

    # An internal note stays on the timeline and is never sent.
    await page.get_by_label("Reply").fill("Asked about delivery; call at 5")
    await page.get_by_role("button", name="Internal note").click()
    note = page.locator("#timeline li.note", has_text="Asked about delivery")
    await expect(note).to_be_visible(timeout=LIVE)
    await expect(note).to_contain_text("Internal note")
    await shot(page, "phone-conversation")

    # Assign to me, then close: the header follows the live conversation.updated.
    await page.get_by_role("button", name="Assign to me").click()
    await expect(page.locator("#thread-sub")).to_contain_text("· me", timeout=LIVE)
    await page.get_by_role("button", name="Close").click()
    await expect(page.locator("#thread-sub")).to_contain_text("closed", timeout=LIVE)
    async with db.read() as session:
        conversation = await session.scalar(select(Conversation))
    assert conversation is not None and conversation.status == "closed"
    assert conversation.assignee_id is not None

    # The contact: every identity, the lead, the timeline across channels.
    await page.get_by_role("link", name="Contact").click()
    pane = page.locator(".contact-pane")
    await expect(pane.locator("#contact-name")).to_have_text("Dilnoza Karimova")
    await expect(pane.locator("#contact-details")).to_contain_text("@dilnoza_k (123456789)")
    await expect(pane.locator("#contact-leads")).to_contain_text("telegram")
    await expect(pane.locator("#contact-timeline li.item")).to_have_count(3)
    assert page.errors == []
    assert len(hub.api.sent()) == 1


async def test_a_lead_moves_on_the_board_and_a_missing_reason_is_asked_for(
    browser: Any, hub: Hub, db: Database
) -> None:
    await add_user(db, "boss@example.com", "manager", "Bakhtiyor")
    await telegram(hub.client, payload("text"))
    page = await logged_in(browser, hub, "boss@example.com")
    await page.get_by_role("link", name="Leads").click()
    new = page.locator(".column[data-stage=new] .lead-card", has_text="Dilnoza")
    await expect(new).to_be_visible()

    await new.get_by_label(re.compile(r"Move lead \d+")).select_option("contacted")
    moved = page.locator(".column[data-stage=contacted] .lead-card", has_text="Dilnoza")
    await expect(moved).to_be_visible(timeout=LIVE)
    async with db.read() as session:
        lead = await session.scalar(select(Lead))
    assert lead is not None and lead.stage == "contacted"

    # Another hub process adds a lead: it appears on the open board, live.
    await telegram(hub.client, update_from(555000111, 900100, "Price of the sofa?"))
    await expect(page.locator(".column[data-stage=new] .lead-card")).to_have_count(1, timeout=LIVE)
    await shot(page, "leads")

    # Lost needs a reason from the pipeline's list before anything is sent.
    await moved.get_by_label(re.compile(r"Move lead \d+")).select_option("lost")
    reason = moved.get_by_label(re.compile(r"Why lead \d+ was lost"))
    await expect(reason).to_be_visible()
    await reason.select_option("too expensive")
    await expect(page.locator(".lead-card", has_text="Dilnoza")).to_have_count(0, timeout=LIVE)
    async with db.read() as session:
        lead = await session.get(Lead, lead.id)
    assert lead is not None and (lead.status, lead.lost_reason) == ("lost", "too expensive")
    assert page.errors == []


async def test_hostile_text_is_shown_as_text_and_runs_nothing(
    browser: Any, hub: Hub, db: Database
) -> None:
    await add_user(db, "op@example.com", "operator", "Olga")
    page = await logged_in(browser, hub, "op@example.com")
    hostile = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
    body = update_from(777000111, 900200, hostile)
    body["message"]["from"]["first_name"] = '<img src=x onerror="window.__xss = 3">'
    await telegram(hub.client, body)
    row = page.locator("#conversations li").first
    await expect(row).to_contain_text('<img src=x onerror="window.__xss = 3">', timeout=LIVE)
    await row.click()
    item = timeline_item(page, "window.__xss = 1")
    await expect(item.locator(".text")).to_have_text(hostile)
    assert await page.locator("#timeline img, #conversations img, #timeline script").count() == 0
    assert await page.evaluate("window.__xss") is None
    assert page.errors == []


async def test_mail_html_renders_in_a_sandboxed_frame_without_its_scripts(
    browser: Any, hub: Hub, db: Database
) -> None:
    await add_user(db, "op@example.com", "operator", "Olga")
    await telegram(hub.client, payload("text"))
    async with db.write() as session:
        conversation = await session.scalar(select(Conversation))
        assert conversation is not None
        session.add(
            TimelineItem(
                conversation_id=conversation.id,
                contact_id=conversation.contact_id,
                channel="tg",
                channel_type="telegram",
                direction="in",
                kind="message",
                text="Order 42 (plain text part)",
                meta={"html": "<p>Order <b>42</b></p><script>parent.__mail = 1</script>"},
            )
        )
    page = await logged_in(browser, hub, "op@example.com")
    await conversation_row(page, "Dilnoza").click()
    item = timeline_item(page, "Order 42 (plain text part)")
    await item.get_by_text("Original e-mail").click()
    frame = item.locator("iframe.mail-html")
    assert await frame.get_attribute("sandbox") == ""
    await expect(frame.content_frame.locator("b")).to_have_text("42")
    assert await page.evaluate("window.__mail") is None


async def test_reminders_due_and_the_caller_card_on_a_ringing_call(
    browser: Any, hub: Hub, db: Database, settings: Settings
) -> None:
    await add_user(db, "op@example.com", "operator", "Olga")
    response = await hub.client.post(
        "/forms/callback", json={"name": "Anvar", "phone": "+998 90 765 43 21"}
    )
    assert response.status == 201
    assert await count(db, Reminder) == 1
    page = await logged_in(browser, hub, "op@example.com")
    await page.get_by_role("link", name=re.compile("Reminders")).click()
    reminder = page.locator("#reminder-list li", has_text="Anvar")
    await expect(reminder).to_be_visible()
    await shot(page, "reminders")
    await reminder.get_by_role("button", name="Done").click()
    await expect(reminder).to_have_count(0)
    async with db.read() as session:
        done = await session.scalar(select(Reminder))
    assert done is not None and done.status == "done"

    # A telephony channel announces a ringing call with its caller card (as the voice and PBX
    # channels publish it after commit): the card pops up.
    async with db.read() as session:
        caller = await caller_card(session, "90 765 43 21", "UZ")
    runtime = Runtime.open(settings)
    try:
        ringing = LiveEvent("call.ringing", {"call": None, "card": caller})
        await publish(runtime.redis, settings.redis_prefix, [ringing])
    finally:
        await runtime.close()
    card = page.locator("#caller-card")
    await expect(card).to_be_visible(timeout=LIVE)
    await expect(card.locator("#caller-phone")).to_have_text("+998907654321")
    # Who is calling, with the open lead: the operator answers knowing the history.
    await expect(card.locator("#caller-name")).to_have_text("Anvar", timeout=LIVE)
    await expect(card.locator("#caller-leads li").first).to_contain_text("form · new")
    await expect(card.locator("#caller-items")).to_contain_text("callback")
    await expect(card.get_by_role("link", name="Open contact")).to_be_visible()
    await shot(page, "caller-card")
    await card.get_by_role("button", name="Dismiss").click()
    await expect(card).to_be_hidden()


def wav(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A real (silent) WAV file, as a call recording."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * int(seconds * rate))
    return buffer.getvalue()


async def test_every_kind_of_item_shows_on_the_timeline(
    browser: Any, hub: Hub, db: Database, settings: Settings
) -> None:
    await add_user(db, "op@example.com", "operator", "Olga")
    await telegram(hub.client, payload("text"))
    photo = store_bytes(settings.data_dir, b"\xff\xd8\xff\xe0 a photo", "image/jpeg", "sofa.jpg")
    recording = store_bytes(settings.data_dir, wav(), "audio/wav", "recording.wav")
    async with db.write() as session:
        conversation = await session.scalar(select(Conversation))
        assert conversation is not None

        def item(kind: str, direction: str, text: str, **extra: Any) -> TimelineItem:
            return TimelineItem(
                conversation_id=conversation.id,
                contact_id=conversation.contact_id,
                channel="tg",
                channel_type="telegram",
                direction=direction,
                kind=kind,
                text=text,
                **extra,
            )

        attachment = {"name": "sofa.jpg", "content_type": "image/jpeg"} | stored_fields(photo)
        audio = {"name": "recording.wav", "content_type": "audio/wav"} | stored_fields(recording)
        session.add_all(
            [
                item("message", "in", "Like this one", attachments=[attachment]),
                item(
                    "call",
                    "in",
                    "Missed call (no answer), voicemail 0:12",
                    attachments=[audio],
                    meta={"recording_url": "https://api.twilio.com/rec/RE1", "missed": True},
                ),
                item(
                    "form",
                    "in",
                    "Call me back after 6",
                    meta={"form_id": "callback", "page_url": "https://shop.example.com/sofas"},
                ),
                item("event", "internal", "Conversation closed"),
            ]
        )
    page = await logged_in(browser, hub, "op@example.com")
    await conversation_row(page, "Dilnoza").click()

    message = page.locator("#timeline li.message", has_text="Like this one")
    async with page.expect_download() as download:
        await message.get_by_role("button", name=re.compile("sofa.jpg")).click()
    assert (await download.value).suggested_filename == "sofa.jpg"

    call = page.locator("#timeline li.call")
    await expect(call.locator(".call-line")).to_have_text(
        "☎ Missed call (no answer), voicemail 0:12"
    )
    player = call.locator("audio")
    await expect(player).to_have_attribute("src", re.compile(r"^blob:"))
    assert await player.evaluate("(a) => a.canPlayType('audio/wav')") != ""

    form = page.locator("#timeline li.form")
    await expect(form).to_contain_text("✎ Form callback")
    await expect(form.locator("dd", has_text="https://shop.example.com/sofas")).to_be_visible()
    await expect(page.locator("#timeline li.event")).to_have_text(re.compile("Conversation closed"))
    assert page.errors == []
