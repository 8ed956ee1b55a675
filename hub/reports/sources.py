"""Which source brings leads and customers: counts, won and conversion per source dimension."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import Lead
from hub.reports.measures import ratio
from hub.reports.report import Period, Report, ReportError
from hub.settings import Settings

DIMENSIONS: dict[str, Any] = {
    "source": Lead.source,
    "channel": Lead.channel,
    "form": Lead.form_id,
    "dialled_number": Lead.dialled_number,
    "utm_source": Lead.utm_source,
    "utm_medium": Lead.utm_medium,
    "utm_campaign": Lead.utm_campaign,
}
COLUMNS = ("dimension", "value", "leads", "open", "won", "lost", "conversion", "win_rate")


async def sources(
    session: AsyncSession, settings: Settings, period: Period, params: Mapping[str, str]
) -> Report:
    """One GROUP BY per dimension (or only `by`); conversion = won / leads, win rate =
    won / (won + lost). Leads without a value for a dimension are left out of its rows."""
    by = params.get("by")
    if by is not None and by not in DIMENSIONS:
        raise ReportError(f"by: one of {', '.join(DIMENSIONS)}, got {by[:40]!r}", "by")
    rows: list[dict[str, Any]] = []
    for name, column in DIMENSIONS.items():
        if by is not None and name != by:
            continue
        query = (
            select(
                column.label("value"),
                func.count().label("leads"),
                func.sum(case((Lead.status == "won", 1), else_=0)).label("won"),
                func.sum(case((Lead.status == "lost", 1), else_=0)).label("lost"),
            )
            .where(
                Lead.created_at >= period.start,
                Lead.created_at < period.end,
                column.is_not(None),
            )
            .group_by(column)
            .order_by(func.count().desc(), column)
        )
        for value, leads, won, lost in await session.execute(query):
            won, lost = int(won or 0), int(lost or 0)
            rows.append(
                {
                    "dimension": name,
                    "value": value,
                    "leads": leads,
                    "open": leads - won - lost,
                    "won": won,
                    "lost": lost,
                    "conversion": ratio(won, leads),
                    "win_rate": ratio(won, won + lost),
                }
            )
    return Report("sources", period, COLUMNS, rows, {"by": by} if by else {})
