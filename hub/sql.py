"""Statements both engines need, built once: SQLAlchemy spends more time building and keying a
statement than SQLite spends running it, so the ingest path executes prebuilt ones."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, Table
from sqlalchemy.dialects import postgresql, sqlite


@cache
def _insert_ignore(dialect: str, table: Table, conflict: tuple[str, ...]) -> Executable:
    if dialect == "postgresql":
        pg = postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict)
        return pg.returning(table.c.id)
    lite = sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict)
    return lite.returning(table.c.id)


def insert_ignore(
    conn: Connection, table: Table, values: dict[str, Any], conflict: list[str]
) -> int | None:
    """Insert a row unless one with the same unique key exists; the new id, or None."""
    statement = _insert_ignore(conn.dialect.name, table, tuple(conflict))
    row = conn.execute(statement, values).first()
    return None if row is None else int(row[0])
