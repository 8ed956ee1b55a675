"""The funnel: how many leads of a period reached each stage, and the conversion between them."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.leads.pipelines import pipeline_named
from hub.models import Lead
from hub.reports.measures import ratio
from hub.reports.report import Period, Report, ReportError
from hub.settings import Settings

COLUMNS = ("stage", "reached", "in_stage", "lost_here", "conversion_from_previous")


async def funnel(
    session: AsyncSession, settings: Settings, period: Period, params: Mapping[str, str]
) -> Report:
    """A lead reached a stage when it is now at that stage or a later one, or won. Counts come
    from one GROUP BY over the period's leads; the cumulative sums run over a row per stage."""
    name = params.get("pipeline") or settings.leads.pipeline
    if name not in settings.pipelines:
        known = ", ".join(sorted(settings.pipelines))
        raise ReportError(f"pipeline: no pipeline {name!r}; one of {known}", "pipeline")
    stages = pipeline_named(settings, name).stages
    query = (
        select(Lead.stage, Lead.status, func.count().label("n"))
        .where(
            Lead.pipeline == name,
            Lead.created_at >= period.start,
            Lead.created_at < period.end,
        )
        .group_by(Lead.stage, Lead.status)
    )
    at_stage = dict.fromkeys(stages, 0)
    open_at = dict.fromkeys(stages, 0)
    lost_at = dict.fromkeys(stages, 0)
    won = total = 0
    for stage, status, n in await session.execute(query):
        total += n
        if status == "won":
            won += n
            continue
        if stage not in at_stage:  # a stage since removed from the configuration: the first
            stage = stages[0]
        at_stage[stage] += n
        (open_at if status == "open" else lost_at)[stage] += n
    rows = []
    reached = total
    previous = None
    for stage in stages:
        rows.append(
            {
                "stage": stage,
                "reached": reached,
                "in_stage": open_at[stage],
                "lost_here": lost_at[stage],
                "conversion_from_previous": ratio(reached, previous)
                if previous is not None
                else None,
            }
        )
        previous = reached
        reached -= at_stage[stage]
    rows.append(
        {
            "stage": "won",
            "reached": won,
            "in_stage": won,
            "lost_here": 0,
            "conversion_from_previous": ratio(won, previous) if previous is not None else None,
        }
    )
    return Report(
        "funnel",
        period,
        COLUMNS,
        rows,
        {"pipeline": name, "leads": total, "won": won, "conversion": ratio(won, total)},
    )
