"""The /reports page in a real browser: a manager's token in the tab, the funnel drawn as SVG
bars with a table, another report chosen, and hostile text shown as text."""

from __future__ import annotations

from typing import Any

from hub.db import Database
from tests.browser import expect
from tests.reports.factories import form_lead, logged_in


async def test_the_reports_page_draws_the_funnel_and_sources(
    make_client: Any, db: Database, browser: Any
) -> None:
    client = await make_client()
    _manager, headers = await logged_in(client, db, "manager")
    token = headers["Authorization"].split(" ", 1)[1]
    for n in range(4):
        await form_lead(db, n, utm_source="<img src=x onerror=alert(1)>" if n else "google")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog {dialog.message}"))
    await page.add_init_script(f"sessionStorage.setItem('hub.token', {token!r});")
    await page.goto(str(client.make_url("/reports")))
    bars = page.locator("#chart svg rect")
    await expect(bars).to_have_count(5)  # four stages and won
    await expect(page.locator("#table tbody tr").first).to_contain_text("new")
    await page.select_option("select[name=report]", "sources")
    await page.select_option("select[name=by]", "utm_source")
    await page.click("button[type=submit]")
    await expect(page.locator("#table tbody tr")).to_have_count(2)
    await expect(page.locator("#table")).to_contain_text("<img src=x onerror=alert(1)>")
    assert await page.locator("#table img").count() == 0
    assert errors == []
    await page.close()


async def test_without_a_token_the_page_sends_to_login(make_client: Any, browser: Any) -> None:
    client = await make_client()
    page = await browser.new_page()
    await page.goto(str(client.make_url("/reports")))
    await page.wait_for_url("**/login")
    await page.close()
