"""Exports: admin only (operators get 403, audited), audited with the IP, streamed in batches."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import select

from hub.db import Database
from hub.models import AuditEntry
from hub.reports import export as export_module
from tests.reports.factories import form_lead, logged_in


async def test_admin_exports_every_kind_in_both_formats(
    make_client: Any, db: Database, monkeypatch: Any
) -> None:
    monkeypatch.setattr(export_module, "BATCH", 3)  # several batches from a few rows
    client = await make_client()
    _admin, headers = await logged_in(client, db, "admin")
    for n in range(7):
        await form_lead(db, n, utm_source="=cmd|' /C calc'!A0" if n == 0 else "google")
    response = await client.get("/api/export/contacts?format=csv", headers=headers)
    assert response.status == 200
    assert response.headers["Content-Disposition"].startswith('attachment; filename="contacts-')
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 7 and rows[0]["phones"].startswith("+99890")

    response = await client.get("/api/export/leads?format=csv", headers=headers)
    leads = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(leads) == 7
    assert leads[0]["utm_source"].startswith("'=")  # no formula reaches a spreadsheet

    response = await client.get("/api/export/timeline?format=json", headers=headers)
    items = json.loads(await response.text())
    assert len(items) == 7 and {i["kind"] for i in items} == {"form"}
    response = await client.get("/api/export/leads?format=json", headers=headers)
    assert [lead["id"] for lead in json.loads(await response.text())] == list(range(1, 8))

    assert (await client.get("/api/export/users", headers=headers)).status == 404
    response = await client.get("/api/export/leads?format=xml", headers=headers)
    assert response.status == 400 and "format: one of csv, json" in (await response.json())["error"]

    async with db.read() as session:
        audit = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action.like("export.%")))
        )
    assert [(a.action, a.meta["format"]) for a in audit] == [
        ("export.contacts", "csv"),
        ("export.leads", "csv"),
        ("export.timeline", "json"),
        ("export.leads", "json"),
    ]
    assert all(a.ip == "127.0.0.1" for a in audit)


async def test_operators_and_managers_cannot_export(make_client: Any, db: Database) -> None:
    client = await make_client()
    await form_lead(db, 1)
    for role in ("operator", "manager"):
        _someone, headers = await logged_in(client, db, role)
        response = await client.get("/api/export/contacts?format=csv", headers=headers)
        assert response.status == 403
        assert "needs the admin role" in (await response.json())["error"]
    assert (await client.get("/api/export/contacts")).status == 401
    async with db.read() as session:
        denied = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "export.contacts.denied")
            )
        )
    assert len(denied) == 2 and all(d.ip == "127.0.0.1" for d in denied)
