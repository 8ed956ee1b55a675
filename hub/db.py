"""Engine and sessions: SQLite (WAL, foreign keys) by default, PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

T = TypeVar("T")

# How often a write transaction is retried when it loses a race (a unique constraint another
# transaction just claimed, a serialization failure, a SQLite lock held by another process).
WRITE_ATTEMPTS = 5


class LostRace(Exception):
    """Another transaction claimed a unique key after we looked: retry the whole transaction."""


def is_retryable(exc: BaseException) -> bool:
    """A lost race: retrying the whole transaction gives the right answer."""
    if isinstance(exc, IntegrityError | LostRace):
        return True
    if isinstance(exc, OperationalError) and "locked" in str(exc).lower():
        return True
    if isinstance(exc, DBAPIError):
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return code in ("40001", "40P01")  # serialization failure, deadlock
    return False


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _take_write_lock_at_begin(engine: Engine) -> None:
    """Writers begin IMMEDIATE: they wait for SQLite's one write lock up front (busy_timeout)
    instead of failing at their first write when another process wrote since they read."""

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, emits BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_path(url: str) -> str:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        _sqlite_path(url)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Database:
    """One per process. Reads and async writes use the async engine. Hot write paths are plain
    functions of a Session run by `run_write`, once per transaction: on PostgreSQL through
    asyncpg, on SQLite in one writer thread with the stdlib driver, which saves a thread hop per
    statement and serialises writers the way SQLite does anyway."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._writer: ThreadPoolExecutor | None = None
        self._sync_sessions: sessionmaker[Session] | None = None
        self._write_sessions = self.sessions
        if self.is_sqlite:
            sync_url = "sqlite:///" + _sqlite_path(url)
            sync_engine = create_engine(sync_url)
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            _take_write_lock_at_begin(sync_engine)
            self._sync_engine: Engine | None = sync_engine
            self._sync_sessions = sessionmaker(sync_engine, expire_on_commit=False)
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
            write_engine = make_engine(url, **engine_kwargs)
            _take_write_lock_at_begin(write_engine.sync_engine)
            self._write_engine: AsyncEngine | None = write_engine
            self._write_sessions = async_sessionmaker(write_engine, expire_on_commit=False)
        else:
            self._sync_engine = None
            self._write_engine = None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction: committed on exit, rolled back on error."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock, self._write_sessions() as session, session.begin():
            yield session

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(session, *args) in one transaction, committed when it returns."""
        if self._sync_sessions is None or self._writer is None or self._write_lock is None:
            async with self.sessions() as session, session.begin():
                return await session.run_sync(fn, *args)
        sessions = self._sync_sessions

        def transaction() -> T:
            with sessions() as session, session.begin():
                return fn(session, *args)

        async with self._write_lock:
            return await asyncio.get_running_loop().run_in_executor(self._writer, transaction)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._write_engine is not None:
            await self._write_engine.dispose()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
