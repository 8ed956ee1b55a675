"""The reports' SQL on generated data: funnel, sources, first response, missed calls, reminders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from hub.db import Database
from hub.models import Lead, Reminder, TimelineItem, utcnow
from hub.reports.registry import run_report
from hub.reports.report import Period, ReportError, csv_lines, parse_period
from hub.settings import Settings
from tests.reports.factories import form_lead, missed_call_lead, user


def period() -> Period:
    now = utcnow()
    return Period(now - timedelta(days=1), now + timedelta(minutes=1))


async def report(db: Database, settings: Settings, name: str, **params: str) -> Any:
    async with db.read() as session:
        return await run_report(session, settings, name, period(), params)


async def test_funnel_counts_reached_stages_and_conversion(
    db: Database, settings: Settings
) -> None:
    ids = [(await form_lead(db, n)).lead_id for n in range(10)]
    moves = {
        0: ("contacted", "open"),
        1: ("qualified", "open"),
        2: ("proposal", "won"),
        3: ("contacted", "won"),
        4: ("qualified", "lost"),
        5: ("new", "lost"),
    }
    async with db.write() as session:
        for index, (stage, status) in moves.items():
            await session.execute(
                update(Lead).where(Lead.id == ids[index]).values(stage=stage, status=status)
            )
    result = await report(db, settings, "funnel")
    rows = {r["stage"]: r for r in result.rows}
    assert [r["stage"] for r in result.rows] == ["new", "contacted", "qualified", "proposal", "won"]
    # reached: at that stage or later, or won
    assert [r["reached"] for r in result.rows] == [10, 5, 4, 2, 2]
    assert rows["new"]["in_stage"] == 4 and rows["new"]["lost_here"] == 1
    assert rows["qualified"]["lost_here"] == 1
    assert rows["contacted"]["conversion_from_previous"] == 0.5
    assert rows["won"]["conversion_from_previous"] == 1.0
    assert result.params["conversion"] == 0.2
    with pytest.raises(ReportError, match="no pipeline 'nope'; one of default"):
        await report(db, settings, "funnel", pipeline="nope")


async def test_first_response_median_and_p90_per_operator(db: Database, settings: Settings) -> None:
    anna = await user(db, "operator", name="Anna")
    waits = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]  # 11 leads: median 60, p90 100
    ids = [(await form_lead(db, n)).lead_id for n in range(len(waits) + 1)]
    async with db.write() as session:
        for lead_id, wait in zip(ids, waits, strict=False):
            lead = await session.get(Lead, lead_id)
            assert lead is not None
            lead.assignee_id = anna.id
            lead.first_response_at = lead.created_at + timedelta(seconds=wait)
    result = await report(db, settings, "first-response")
    by = {(r["dimension"], r["key"]): r for r in result.rows}
    mine = by[("operator", anna.id)]
    assert (mine["leads"], mine["responded"]) == (11, 11)
    assert mine["median_seconds"] == pytest.approx(60, abs=0.1)
    assert mine["p90_seconds"] == pytest.approx(100, abs=0.1)
    assert mine["name"] == "Anna"
    unassigned = by[("operator", None)]
    assert (unassigned["leads"], unassigned["responded"], unassigned["median_seconds"]) == (
        1,
        0,
        None,
    )
    channel = by[("channel", "callback")]
    assert channel["leads"] == 12 and channel["median_seconds"] == pytest.approx(60, abs=0.1)


async def test_missed_calls_and_time_to_call_back(db: Database, settings: Settings) -> None:
    first = await missed_call_lead(db, 1, "+998712000001")
    await missed_call_lead(db, 2, "+998712000001")
    await form_lead(db, 3)  # not a call
    async with db.write() as session:
        call = await session.get(TimelineItem, first.item_id)
        assert call is not None
        session.add(
            TimelineItem(
                conversation_id=call.conversation_id,
                contact_id=call.contact_id,
                channel="office",
                channel_type="pbx",
                direction="out",
                kind="call",
                text="Called back",
                created_at=call.created_at + timedelta(seconds=90),
            )
        )
    result = await report(db, settings, "missed-calls")
    office, total = result.rows
    assert office["channel"] == "office"
    assert (office["missed"], office["called_back"], office["not_called_back"]) == (2, 1, 1)
    assert office["median_seconds"] == pytest.approx(90, abs=0.1)
    assert total["channel"] == "(all channels)" and total["missed"] == 2
    assert total["p90_seconds"] == pytest.approx(90, abs=0.1)


async def test_reminders_on_time_and_late(db: Database, settings: Settings) -> None:
    bob = await user(db, "operator", name="Bob")
    grace = settings.leads.escalate_after
    now = utcnow()
    leads = [await form_lead(db, n) for n in range(5)]
    due = now - grace - timedelta(hours=1)
    cases = [
        ("done", due + timedelta(minutes=5)),  # on time
        ("done", due + grace + timedelta(minutes=1)),  # late
        ("pending", now),  # overdue: open past the grace
        ("cancelled", now),
    ]
    async with db.write() as session:
        for result, (status, updated) in zip(leads, cases, strict=False):
            session.add(
                Reminder(
                    lead_id=result.lead_id,
                    contact_id=result.contact_id,
                    assignee_id=bob.id,
                    due_at=due,
                    status=status,
                    updated_at=updated,
                )
            )
        session.add(
            Reminder(
                lead_id=leads[4].lead_id,
                contact_id=leads[4].contact_id,
                assignee_id=bob.id,
                due_at=now,
                status="pending",
            )
        )
    result = await report(db, settings, "reminders")
    (row,) = result.rows
    assert row["name"] == "Bob" and row["due"] == 5
    assert (row["done_on_time"], row["done_late"], row["overdue"], row["open"]) == (1, 1, 1, 1)
    assert row["cancelled"] == 1 and row["on_time_share"] == pytest.approx(1 / 3, abs=1e-3)


async def test_period_parsing_and_csv() -> None:
    p = parse_period("2026-11-01", "2026-11-30")
    assert p.start.isoformat() == "2026-11-01T00:00:00+00:00"
    assert p.end.isoformat() == "2026-12-01T00:00:00+00:00"  # the `to` day is included
    with pytest.raises(ReportError, match="from: must be before to"):
        parse_period("2026-12-01", "2026-11-01")
    with pytest.raises(ReportError, match="not a date"):
        parse_period("yesterday", None)
    lines = list(csv_lines(["value", "leads"], [{"value": "=HYPERLINK(1)", "leads": 3}]))
    assert lines == ["value,leads\r\n", "'=HYPERLINK(1),3\r\n"]
