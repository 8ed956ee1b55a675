"""Issue 9 acceptance: two browsers logged in as two operators; a Telegram message arrives and
shows in both; one replies; the other sees the reply and its delivery status."""

from __future__ import annotations

from typing import Any

from hub.db import Database
from tests.channels.test_telegram import payload
from tests.webhooks.test_events import telegram
from tests.webhooks.test_ui_browser import (
    LIVE,
    TEXT,
    Hub,
    add_user,
    conversation_row,
    expect,
    hub,
    logged_in,
    shot,
    timeline_item,
)

__all__ = ["hub"]  # the fixture, shared with the browser tests


async def test_two_operators_see_a_telegram_message_and_each_others_reply_live(
    browser: Any, hub: Hub, db: Database
) -> None:
    await add_user(db, "olga@example.com", "operator", "Olga")
    await add_user(db, "pavel@example.com", "operator", "Pavel")
    olga = await logged_in(browser, hub, "olga@example.com")
    pavel = await logged_in(browser, hub, "pavel@example.com")

    await telegram(hub.client, payload("text"))
    for page in (olga, pavel):
        await expect(conversation_row(page, "Dilnoza")).to_be_visible(timeout=LIVE)

    await pavel.locator("#conversations a", has_text="Dilnoza").click()
    await olga.locator("#conversations a", has_text="Dilnoza").click()
    for page in (olga, pavel):
        await expect(timeline_item(page, TEXT)).to_be_visible()

    await olga.get_by_label("Reply").fill("Yes, we deliver there tomorrow.")
    await olga.get_by_role("button", name="Send").click()
    seen_by_pavel = timeline_item(pavel, "Yes, we deliver there tomorrow.")
    await expect(seen_by_pavel.locator(".delivery")).to_have_text("queued", timeout=LIVE)

    await hub.deliver()  # the worker sends it through the (fake) Bot API
    for page in (pavel, olga):
        reply = timeline_item(page, "Yes, we deliver there tomorrow.")
        await expect(reply.locator(".delivery")).to_have_text("sent", timeout=LIVE)
    assert [c.params["text"] for c in hub.api.sent()] == ["Yes, we deliver there tomorrow."]
    assert olga.errors == [] and pavel.errors == []
    await shot(olga, "inbox")

    # Beside the thread, the contact with the lead and the timeline of every channel.
    await olga.get_by_role("link", name="Contact").click()
    await expect(olga.locator("#contact-name")).to_have_text("Dilnoza Karimova")
    await expect(olga.locator("#contact-timeline li.item")).to_have_count(2)
    await shot(olga, "contact")
