"""Callback reminders done on time vs late, per assignee."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import Reminder, User, utcnow
from hub.reports.measures import ratio, seconds_between
from hub.reports.report import Period, Report
from hub.settings import Settings

COLUMNS = (
    "assignee_id",
    "name",
    "due",
    "done_on_time",
    "done_late",
    "overdue",
    "open",
    "cancelled",
    "on_time_share",
)


async def reminders(
    session: AsyncSession, settings: Settings, period: Period, params: Mapping[str, str]
) -> Report:
    """Reminders due in the period. On time: done no later than `[leads] escalate_after` past
    the due time (before it would escalate); overdue: still open past that."""
    dialect = session.get_bind().dialect.name
    grace = settings.leads.escalate_after.total_seconds()
    done = Reminder.status == "done"
    waiting = Reminder.status.in_(("pending", "notified"))
    lateness = seconds_between(dialect, Reminder.updated_at, Reminder.due_at)
    deadline_passed = seconds_between(dialect, utcnow(), Reminder.due_at) > grace
    if dialect == "sqlite":  # julianday() of a bound aware datetime needs the stored text form
        now_text = utcnow().replace(tzinfo=None).isoformat(sep=" ")
        deadline_passed = seconds_between(dialect, now_text, Reminder.due_at) > grace

    def count(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    query = (
        select(
            Reminder.assignee_id,
            func.count().label("due"),
            count(and_(done, lateness <= grace)).label("on_time"),
            count(and_(done, lateness > grace)).label("late"),
            count(and_(waiting, deadline_passed)).label("overdue"),
            count(and_(waiting, ~deadline_passed)).label("open"),
            count(Reminder.status == "cancelled").label("cancelled"),
        )
        .where(Reminder.due_at >= period.start, Reminder.due_at < period.end)
        .group_by(Reminder.assignee_id)
        .order_by(Reminder.assignee_id)
    )
    names = {u.id: u.name or u.email for u in await session.scalars(select(User))}
    rows: list[dict[str, Any]] = []
    for r in await session.execute(query):
        on_time, late = int(r.on_time or 0), int(r.late or 0)
        rows.append(
            {
                "assignee_id": r.assignee_id,
                "name": names.get(r.assignee_id, "(unassigned)")
                if r.assignee_id
                else "(unassigned)",
                "due": r.due,
                "done_on_time": on_time,
                "done_late": late,
                "overdue": int(r.overdue or 0),
                "open": int(r.open or 0),
                "cancelled": int(r.cancelled or 0),
                "on_time_share": ratio(on_time, on_time + late + int(r.overdue or 0)),
            }
        )
    return Report("reminders", period, COLUMNS, rows, {"grace_seconds": int(grace)})
