"""The migrations build exactly the schema the models describe, on the engine under test."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from hub.db import Database
from hub.migrate import current_revision, head_revision
from hub.models import Base


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    db = Database(database_url)
    try:
        async with db.engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await db.dispose()
    assert differences == []


async def test_database_is_at_head(database_url: str) -> None:
    assert await current_revision(database_url) == head_revision(database_url)
