"""First-response time: how long new leads waited for an answer, per operator and per channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import Lead, User
from hub.reports.measures import percentiles, rounded, seconds_between
from hub.reports.report import Period, Report
from hub.settings import Settings

COLUMNS = (
    "dimension",
    "key",
    "name",
    "leads",
    "responded",
    "median_seconds",
    "p90_seconds",
    "avg_seconds",
)


async def first_response(
    session: AsyncSession, settings: Settings, period: Period, params: Mapping[str, str]
) -> Report:
    """Seconds from a lead's arrival to its first reply (`first_response_at`), median and p90
    by nearest rank in SQL; per operator (the lead's assignee) and per channel."""
    dialect = session.get_bind().dialect.name
    in_period = (Lead.created_at >= period.start, Lead.created_at < period.end)
    names = {u.id: u.name or u.email for u in await session.scalars(select(User))}
    rows: list[dict[str, Any]] = []
    for dimension, column in (("operator", Lead.assignee_id), ("channel", Lead.channel)):
        totals = (
            select(
                column.label("g"),
                func.count().label("leads"),
                func.count(Lead.first_response_at).label("responded"),
            )
            .where(*in_period)
            .group_by(column)
        )
        durations = select(
            column.label("g"),
            seconds_between(dialect, Lead.first_response_at, Lead.created_at).label("s"),
        ).where(*in_period, Lead.first_response_at.is_not(None))
        stats = {r.g: r for r in await session.execute(percentiles(durations))}
        for row in await session.execute(totals.order_by(column)):
            key: Any = row.g
            leads, responded = row.leads, row.responded
            stat = stats.get(key)
            if dimension == "operator":
                name = names.get(key, f"user {key}") if key is not None else "(unassigned)"
            else:
                name = key or "(none)"
            rows.append(
                {
                    "dimension": dimension,
                    "key": key,
                    "name": name,
                    "leads": leads,
                    "responded": responded,
                    "median_seconds": rounded(stat.median) if stat else None,
                    "p90_seconds": rounded(stat.p90) if stat else None,
                    "avg_seconds": rounded(stat.avg) if stat else None,
                }
            )
    return Report("first-response", period, COLUMNS, rows)
