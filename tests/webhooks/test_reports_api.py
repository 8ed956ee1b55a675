"""GET /api/reports/{name}: managers and admins, JSON or CSV; the /reports page and its files."""

from __future__ import annotations

import csv
import io
from typing import Any

from hub.db import Database
from tests.reports.factories import form_lead, logged_in


async def test_reports_for_managers_as_json_and_csv(make_client: Any, db: Database) -> None:
    client = await make_client()
    _manager, headers = await logged_in(client, db, "manager")
    for n in range(3):
        await form_lead(db, n, utm_source="google" if n else "facebook")
    for name in ("funnel", "sources", "first-response", "missed-calls", "reminders"):
        response = await client.get(f"/api/reports/{name}", headers=headers)
        assert response.status == 200, name
        body = await response.json()
        assert body["report"] == name and body["columns"] and "from" in body
    response = await client.get("/api/reports/sources?by=utm_source&format=csv", headers=headers)
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["value"], r["leads"]) for r in rows] == [("google", "2"), ("facebook", "1")]

    bad = [
        ("/api/reports/nope", 404, "no report 'nope'"),
        ("/api/reports/sources?by=colour", 400, "by: one of source, channel"),
        ("/api/reports/funnel?from=2026-12-01&to=2026-11-01", 400, "from: must be before to"),
        ("/api/reports/funnel?to=soon", 400, "not a date"),
        ("/api/reports/funnel?format=pdf", 400, "format: one of json, csv"),
    ]
    for url, status, reason in bad:
        response = await client.get(url, headers=headers)
        assert response.status == status, url
        assert reason in (await response.json())["error"], url


async def test_operators_cannot_see_reports_and_the_page_is_served(
    make_client: Any, db: Database
) -> None:
    client = await make_client()
    _operator, headers = await logged_in(client, db, "operator")
    response = await client.get("/api/reports/funnel", headers=headers)
    assert response.status == 403 and "needs the manager role" in (await response.json())["error"]
    page = await client.get("/reports")
    assert page.status == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert '<script src="/reports/static/reports.js"' in html and "<script>" not in html
    script = await client.get("/reports/static/reports.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert "innerHTML" not in await script.text()
    assert (await client.get("/reports/static/..%2Fapp.py")).status == 404
    assert (await client.get("/reports/static/nothing.js")).status == 404
    page = await client.get("/admin/import")
    assert page.status == 200 and '<script src="/reports/static/import.js"' in await page.text()
    script = await client.get("/reports/static/import.js")
    assert script.status == 200 and "innerHTML" not in await script.text()
