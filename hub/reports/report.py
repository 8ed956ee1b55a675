"""A report: its period (`from` inclusive, `to` exclusive, UTC), columns and rows; as CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hub.models import utcnow

DEFAULT_SPAN = timedelta(days=30)


class ReportError(ValueError):
    """A report request that cannot run; the message names the parameter and what to send."""

    def __init__(self, reason: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def _moment(name: str, text: str, end: bool) -> datetime:
    """An ISO date or date-time; a bare date `to` means the end of that day (inclusive)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"{name}: {text[:40]!r} is not a date like 2026-11-01 or 2026-11-01T09:00:00Z", name
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_period(start: str | None, end: str | None) -> Period:
    """From the query's `from` and `to`; the last 30 days when absent."""
    until = _moment("to", end, True) if end else utcnow()
    since = _moment("from", start, False) if start else until - DEFAULT_SPAN
    if since >= until:
        raise ReportError("from: must be before to", "from")
    return Period(since, until)


@dataclass(frozen=True)
class Report:
    name: str
    period: Period
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "from": self.period.start.isoformat(),
            "to": self.period.end.isoformat(),
            **dict(self.params),
            "columns": list(self.columns),
            "rows": self.rows,
        }


# A cell starting with one of these is a formula to a spreadsheet (CSV injection): people type
# UTM tags, names and reasons, so such cells get a leading apostrophe.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# Numbers and phones ("+998 90 123-45-67", "-5") are no formula, and must stay importable.
PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s().-]+$")


def csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.match(value):
        return "'" + value
    return "" if value is None else value


def csv_lines(columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """The header and each row as one CSV line (RFC 4180, CRLF)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = list(columns)
    writer.writerow(columns)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(row.get(c)) for c in columns])
        yield buffer.getvalue()
