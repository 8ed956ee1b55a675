"""The reports by name, as the API and `hub bench --target reports` run them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from hub.reports.calls import missed_calls
from hub.reports.funnel import funnel
from hub.reports.reminders import reminders
from hub.reports.report import Period, Report, ReportError
from hub.reports.response import first_response
from hub.reports.sources import sources
from hub.settings import Settings

ReportFunction = Callable[[AsyncSession, Settings, Period, Mapping[str, str]], Awaitable[Report]]
REPORTS: dict[str, ReportFunction] = {
    "funnel": funnel,
    "sources": sources,
    "first-response": first_response,
    "missed-calls": missed_calls,
    "reminders": reminders,
}


async def run_report(
    session: AsyncSession,
    settings: Settings,
    name: str,
    period: Period,
    params: Mapping[str, str],
) -> Report:
    report = REPORTS.get(name)
    if report is None:
        raise ReportError(f"no report {name[:40]!r}; one of {', '.join(REPORTS)}", status=404)
    return await report(session, settings, period, params)
