"""Missed calls and how fast they were called back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import TimelineItem
from hub.reports.measures import percentiles, ratio, rounded, seconds_between
from hub.reports.report import Period, Report
from hub.settings import Settings

COLUMNS = (
    "channel",
    "missed",
    "called_back",
    "not_called_back",
    "called_back_share",
    "median_seconds",
    "p90_seconds",
)
ALL = "(all channels)"


def missed_call() -> Any:
    """An inbound call item marked missed (the item's status, or `missed: true` in its meta)."""
    return and_(
        TimelineItem.kind == "call",
        TimelineItem.direction == "in",
        or_(TimelineItem.status == "missed", TimelineItem.meta["missed"].as_boolean()),
    )


async def missed_calls(
    session: AsyncSession, settings: Settings, period: Period, params: Mapping[str, str]
) -> Report:
    """Per channel: missed calls in the period, and the time to the first outbound call or
    message to the same contact afterwards (median, p90)."""
    dialect = session.get_bind().dialect.name
    answer = TimelineItem.__table__.alias("answer")
    called_back_at = (
        select(func.min(answer.c.created_at))
        .where(
            answer.c.contact_id == TimelineItem.contact_id,
            answer.c.direction == "out",
            answer.c.kind.in_(("call", "message")),
            answer.c.created_at >= TimelineItem.created_at,
        )
        .scalar_subquery()
    )
    calls = (
        select(
            TimelineItem.channel.label("channel"),
            called_back_at.label("back_at"),
            TimelineItem.created_at.label("at"),
        )
        .where(
            missed_call(),
            TimelineItem.created_at >= period.start,
            TimelineItem.created_at < period.end,
        )
        .subquery("calls")
    )
    counts = select(
        calls.c.channel, func.count().label("missed"), func.count(calls.c.back_at).label("back")
    ).group_by(calls.c.channel)
    durations = select(
        calls.c.channel.label("g"), seconds_between(dialect, calls.c.back_at, calls.c.at).label("s")
    ).where(calls.c.back_at.is_not(None))
    overall = select(
        literal(ALL).label("g"), seconds_between(dialect, calls.c.back_at, calls.c.at).label("s")
    ).where(calls.c.back_at.is_not(None))
    stats = {r.g: r for r in await session.execute(percentiles(durations))}
    everything = percentiles(overall)
    total_stat = (await session.execute(everything)).first()
    rows: list[dict[str, Any]] = []
    missed_total = back_total = 0
    for channel, missed, back in await session.execute(counts.order_by(calls.c.channel)):
        missed_total += missed
        back_total += back
        rows.append(_row(channel, missed, back, stats.get(channel)))
    rows.append(_row(ALL, missed_total, back_total, total_stat))
    return Report("missed-calls", period, COLUMNS, rows)


def _row(channel: str, missed: int, back: int, stat: Any) -> dict[str, Any]:
    return {
        "channel": channel,
        "missed": missed,
        "called_back": back,
        "not_called_back": missed - back,
        "called_back_share": ratio(back, missed),
        "median_seconds": rounded(stat.median) if stat else None,
        "p90_seconds": rounded(stat.p90) if stat else None,
    }
