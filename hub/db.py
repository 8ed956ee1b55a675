"""Engine and sessions: SQLite (WAL, foreign keys) by default, PostgreSQL when configured."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
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
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

T = TypeVar("T")
log = structlog.get_logger(__name__)

# How often a write transaction is retried when it loses a race (a unique constraint another
# transaction just claimed, a serialization failure, a SQLite lock held by another process).
WRITE_ATTEMPTS = 8


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


def _short_busy_timeout(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={GroupCommit.BUSY_MS}")
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


Job = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
MAX_BATCH = 64


class GroupCommit:
    """SQLite write transactions, run on the event loop's thread and committed several at a
    time. Each job runs in a SAVEPOINT of a shared transaction, so one job's failure undoes only
    that job; every job's result is handed back only after the commit.

    Why the loop thread: a SQLite transaction here takes well under a millisecond, while
    handing it to a thread costs a GIL hand-off per statement, milliseconds each when the loop
    is busy. Why batches: one commit and one lock acquisition serve everyone who arrived while
    the previous batch ran. The connection waits at most BUSY_MS for another process's lock;
    then the job fails as "locked" and its caller retries without blocking the loop."""

    BUSY_MS = 100

    def __init__(self, engine: Engine, lock: asyncio.Lock | None = None) -> None:
        self._engine = engine
        # Shared with Database.write(): this process's other SQLite writer (an async session)
        # and the batches take turns here, so neither meets the other's file lock and waits
        # out the busy timeout with the loop blocked.
        self._lock = lock or asyncio.Lock()
        self._pending: list[Job] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # requests arriving in this loop iteration join the batch
        while self._pending:
            async with self._lock:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                outcomes = self._commit(batch)
            for (_fn, _args, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the caller went away; its work is committed all the same
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            await asyncio.sleep(0)  # serve other requests between batches

    def _commit(self, batch: list[Job]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._engine.begin() as conn:
                if len(batch) == 1:  # alone in its transaction: no savepoint needed
                    fn, args, _future = batch[0]
                    return [(True, fn(conn, *args))]
                for fn, args, _future in batch:
                    try:
                        with conn.begin_nested():
                            outcomes.append((True, fn(conn, *args)))
                    except Exception as exc:
                        outcomes.append((False, exc))
        except Exception as exc:  # the transaction failed: nothing in the batch is stored
            return [(False, exc)] * len(batch)
        return outcomes

    async def drain(self) -> None:
        if self._flusher is not None:
            await self._flusher


class Database:
    """One per process. Reads and async writes use the async engine. Hot write paths are plain
    functions of a Session run by `run_write`: on PostgreSQL through asyncpg, one transaction
    each; on SQLite with the stdlib driver, grouped into shared commits (GroupCommit)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._group: GroupCommit | None = None
        self._write_sessions = self.sessions
        if self.is_sqlite:
            sync_url = "sqlite:///" + _sqlite_path(url)
            sync_engine = create_engine(sync_url, poolclass=StaticPool)  # the loop's one writer
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            event.listen(sync_engine, "connect", _short_busy_timeout)
            _take_write_lock_at_begin(sync_engine)
            self._sync_engine: Engine | None = sync_engine
            self._group = GroupCommit(sync_engine, self._write_lock)
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
        """Run fn(connection, *args) in one transaction, committed when it returns: plain
        synchronous Core code, the same on both engines."""
        if self._group is not None:
            return await self._group.run(fn, *args)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args)

    async def run_write_retrying(self, fn: Callable[..., T], *args: Any) -> T:
        """run_write, retried when the transaction lost a race (a unique key another transaction
        just claimed, a lock held by another process). Safe for functions that claim a dedupe
        key first: every attempt starts from nothing or finds the winner's result."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return await self.run_write(fn, *args)
            except Exception as exc:
                if attempt == WRITE_ATTEMPTS or not is_retryable(exc):
                    raise
                log.info("write_retry", attempt=attempt, reason=type(exc).__name__)
                await asyncio.sleep(0.01 * 2**attempt)  # 20 ms .. 1.3 s: a lock to clear
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._write_engine is not None:
            await self._write_engine.dispose()
        if self._group is not None:
            await self._group.drain()
        if self._sync_engine is not None:
            self._sync_engine.dispose()
