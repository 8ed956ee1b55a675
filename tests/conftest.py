"""Shared fixtures: a real database (SQLite by default, PostgreSQL with HUB_TEST_DATABASE_URL),
the real Redis at 127.0.0.1:6379 under a per-test key prefix, and the real app on a TCP port."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import argon2
import pytest
import redis as sync_redis
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, text

from hub.auth.passwords import use_parameters
from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.log import configure_logging
from hub.migrate import upgrade
from hub.models import Base
from hub.runtime import Runtime
from hub.settings import FormConfig, Settings
from webhooks.app import make_app

TEST_REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("HUB_TEST_DATABASE_URL")
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _logging() -> None:
    configure_logging("debug", "console")
    use_parameters(argon2.profiles.CHEAPEST)  # hashing cost is not what these tests measure


def _admin_url(url: str) -> tuple[str, str]:
    """The server URL without a database name, and the database name."""
    base, _, name = url.rpartition("/")
    return base, name.split("?")[0]


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrations run once per session, on the engine under test: the schema the tests use is
    the one alembic builds, not create_all's. PostgreSQL gets a database of its own."""
    if PG_URL:
        import asyncpg

        base, _ = _admin_url(PG_URL)
        name = f"hub_test_{uuid.uuid4().hex[:12]}"
        dsn = PG_URL.replace("+asyncpg", "")  # asyncpg itself takes a plain postgresql:// DSN

        async def admin(sql: str) -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        url = f"{base}/{name}"
        upgrade(url)
        yield url
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        yield str(path)


@pytest.fixture
async def database_url(migrated_database: str, tmp_path: Path) -> AsyncIterator[str]:
    if PG_URL:
        db = Database(migrated_database)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await db.dispose()
        yield migrated_database
    else:
        path = tmp_path / "hub.db"
        shutil.copyfile(migrated_database, path)
        yield f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"hubtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = sync_redis.Redis.from_url(TEST_REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        keys += list(client.scan_iter(match=f"arq:*{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


CALLBACK_FORM = FormConfig(
    id="callback",
    fields=("name", "phone", "email", "message"),
    required=("phone",),
    allowed_origins=("https://shop.example.com",),
    success_url="https://shop.example.com/thanks",
    rate_limit="1000/minute",
    max_body_bytes=4096,
)


@pytest.fixture
def settings(database_url: str, redis_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        redis_prefix=redis_prefix,
        default_region="UZ",
        forms={"callback": CALLBACK_FORM},
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


MakeClient = Callable[..., Any]


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[MakeClient]:
    """Start the real app on a real port; keyword arguments replace settings fields."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        runtime = Runtime.open(replace(settings, **overrides))
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(runtime)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    result: TestClient[Any, Any] = await make_client()
    return result


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


PASSWORD = "correct horse battery"


@pytest.fixture
async def token(client: TestClient[Any, Any], db: Database) -> str:
    """A logged-in operator's bearer token, from the real login endpoint."""
    async with db.write() as session:
        await create_user(session, "op@example.com", PASSWORD, "operator", "Olga")
    response = await client.post(
        "/api/auth/login", json={"email": "OP@example.com", "password": PASSWORD}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["user"]["role"] == "operator" and "password_hash" not in body["user"]
    return str(body["token"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sms_event(
    external_id: str, phone: str, name: str = "Dilnoza", text: str = "Salom", **meta: Any
) -> InboundEvent:
    """An inbound SMS on the "sms" Twilio channel, as its webhook parses one."""
    return InboundEvent(
        channel="sms",
        channel_type="twilio",
        external_id=external_id,
        source="sms",
        sender=Sender(phones=(phone,), name=name),
        text=text,
        meta=meta,
    )


async def sign_in(client: TestClient[Any, Any], email: str) -> str:
    """A bearer token for an existing user (password PASSWORD), from the real login endpoint."""
    response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return str((await response.json())["token"])


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium through playwright (tests/browser.py checks it is there)."""
    from tests.browser import CHROMIUM, CHROMIUM_ARGS, playwright_api

    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()
