"""Dialect-neutral statements both engines need: insert-or-ignore on a unique key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(
    session: Session, table: Table, values: dict[str, Any], conflict: list[str]
) -> int | None:
    """Insert a row unless one with the same unique key exists; the new id, or None."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(table).values(**values)
        stmt = pg.on_conflict_do_nothing(index_elements=conflict).returning(table.c.id)
    else:
        lite = sqlite.insert(table).values(**values)
        stmt = lite.on_conflict_do_nothing(index_elements=conflict).returning(table.c.id)
    result = session.execute(stmt)
    row = result.first()
    return None if row is None else int(row[0])
