"""Issue 10's acceptance: the sources report counts two forms' UTM sources and a missed call on
an ad's number, with conversion once leads are won or lost; importing a CSV twice makes no
duplicates and lists rejected rows with reasons; operators cannot export, an admin's export
is audited with the IP."""

from __future__ import annotations

import asyncio
import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.models import AuditEntry, Contact, Identity
from hub.settings import Settings
from hubcli.main import main
from tests.conftest import count
from tests.hubcli.test_cli import cli_env, hub_db, restore_logging  # noqa: F401  (fixtures)
from tests.reports.factories import fake, logged_in, missed_call_lead, uz_phone

AD_NUMBER = "+998712000777"
ORIGIN = {"Origin": "https://shop.example.com"}


async def test_sources_report_after_won_and_lost(
    make_client: Any, db: Database, settings: Settings
) -> None:
    spring = replace(settings.forms["callback"], id="spring")
    client = await make_client(forms={"callback": settings.forms["callback"], "spring": spring})
    _manager, headers = await logged_in(client, db, "manager")
    lead_ids: dict[str, list[int]] = {"google": [], "instagram": []}
    for n, (form, source) in enumerate(
        [("callback", "google")] * 3 + [("spring", "instagram")] * 2
    ):
        response = await client.post(
            f"/forms/{form}",
            json={"name": fake.name(), "phone": uz_phone(n), "utm_source": source},
            headers=ORIGIN,
        )
        assert response.status == 201, await response.text()
        lead_ids[source].append((await response.json())["lead_id"])
    call = await missed_call_lead(db, 99, AD_NUMBER)

    changes = [
        (lead_ids["google"][0], {"status": "won"}),
        (lead_ids["google"][1], {"status": "lost", "lost_reason": "too expensive"}),
        (lead_ids["instagram"][0], {"status": "won"}),
        (call.lead_id, {"status": "won"}),
    ]
    for lead_id, change in changes:
        response = await client.patch(f"/api/leads/{lead_id}", json=change, headers=headers)
        assert response.status == 200, await response.text()

    response = await client.get("/api/reports/sources", headers=headers)
    assert response.status == 200
    rows = {(r["dimension"], r["value"]): r for r in (await response.json())["rows"]}

    def figures(dimension: str, value: str) -> tuple[int, int, int, float | None]:
        row = rows[(dimension, value)]
        return row["leads"], row["won"], row["lost"], row["conversion"]

    assert figures("utm_source", "google") == (3, 1, 1, 0.3333)
    assert figures("utm_source", "instagram") == (2, 1, 0, 0.5)
    assert figures("form", "callback") == (3, 1, 1, 0.3333)
    assert figures("form", "spring") == (2, 1, 0, 0.5)
    assert figures("dialled_number", AD_NUMBER) == (1, 1, 0, 1.0)
    assert figures("source", "call") == (1, 1, 0, 1.0)
    assert figures("source", "form") == (5, 2, 1, 0.4)
    assert rows[("channel", "office")]["win_rate"] == 1.0

    response = await client.get("/api/reports/missed-calls", headers=headers)
    office = (await response.json())["rows"][0]
    assert (office["channel"], office["missed"], office["called_back"]) == ("office", 1, 0)


def test_import_twice_makes_no_duplicates_and_lists_rejects(
    hub_db: str,  # noqa: F811
    cli_env: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = cli_env / "contacts.csv"
    rows = [[fake.name(), uz_phone(n), f"person{n}@example.com"] for n in range(20)]
    rows += [["No Way", "12345abc", ""], ["Nobody", "", ""]]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Name", "Mobile", "Email"])
        writer.writerows(rows)
    for _ in range(2):
        assert main(["import", "contacts", str(path)]) == 0
    out, _err = capsys.readouterr()
    assert "line 22: phone: '12345abc' is not a valid phone number" in out
    assert "line 23: no phone or e-mail" in out
    report = (cli_env / "contacts.rejected.csv").read_text(encoding="utf-8")
    rejected = list(csv.DictReader(report.splitlines()))
    assert [(r["line"], r["Name"]) for r in rejected] == [("22", "No Way"), ("23", "Nobody")]

    async def stored() -> tuple[int, int]:
        db = Database(hub_db)
        try:
            return await count(db, Contact), await count(db, Identity)
        finally:
            await db.dispose()

    assert asyncio.run(stored()) == (20, 40)
    assert main(["import", "contacts", str(path), "--dry-run", "--map", "Mobile=-"]) == 0
    assert "dry run" in capsys.readouterr().out


async def test_operator_cannot_export_admin_export_is_audited_with_ip(
    make_client: Any, db: Database
) -> None:
    client = await make_client()
    operator, op_headers = await logged_in(client, db, "operator")
    admin, admin_headers = await logged_in(client, db, "admin")
    await missed_call_lead(db, 1, AD_NUMBER)
    response = await client.get("/api/export/leads?format=json", headers=op_headers)
    assert response.status == 403
    response = await client.get("/api/export/leads?format=json", headers=admin_headers)
    assert response.status == 200 and len(await response.json()) == 1
    async with db.read() as session:
        entries = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action.like("export.%")).order_by(AuditEntry.id)
            )
        )
    assert [(e.action, e.user_id, e.ip) for e in entries] == [
        ("export.leads.denied", operator.id, "127.0.0.1"),
        ("export.leads", admin.id, "127.0.0.1"),
    ]
