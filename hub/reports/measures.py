"""SQL building blocks shared by the reports: durations and percentiles, on both engines.

SQLite has no percentile functions, so a percentile is the nearest-rank row of a window:
ROW_NUMBER() over the group ordered by the value, and the row whose rank is ceil(p * n).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Float, Select, case, cast, extract, func, select


def seconds_between(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """later - earlier in seconds (a float)."""
    if dialect == "sqlite":
        # Both are stored as ISO text in UTC; julianday reads them, in days.
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return cast(extract("epoch", later - earlier), Float)


def percentiles(durations: Select[Any]) -> Select[Any]:
    """Per group of `durations` (columns `g`, `s`): n, median, p90, average of s."""
    d = durations.subquery("d")
    ranked = select(
        d.c.g,
        d.c.s,
        func.row_number().over(partition_by=d.c.g, order_by=d.c.s).label("rn"),
        func.count().over(partition_by=d.c.g).label("n"),
    ).subquery("ranked")
    # Nearest rank: ceil(n / 2) and ceil(9n / 10), in integer arithmetic.
    median = func.max(case((ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.s)))
    p90 = func.max(case((ranked.c.rn == (ranked.c.n * 9 + 9) // 10, ranked.c.s)))
    return select(
        ranked.c.g,
        func.max(ranked.c.n).label("n"),
        median.label("median"),
        p90.label("p90"),
        func.avg(ranked.c.s).label("avg"),
    ).group_by(ranked.c.g)


def rounded(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
