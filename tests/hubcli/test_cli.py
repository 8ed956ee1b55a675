"""`hub user create` and `hub migrate` through the real entrypoint, on the test database.

main() runs asyncio.run itself, so these tests are plain synchronous functions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select

from hub.auth.passwords import verify_password
from hub.db import Database
from hub.models import User
from hub.settings import TOP_LEVEL
from hubcli.main import main
from tests.conftest import PG_URL

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """main() configures structlog to print to the sys.stderr of the moment (capsys's, closed
    after the test): put the previous configuration back so later tests do not log into it."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No HUB_* variable of the shell, an empty config file, the data dir in tmp_path."""
    for _kind, var in TOP_LEVEL.values():
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("HUB_CONFIG", str(config))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def hub_db(cli_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    return database_url


def stored_users(url: str) -> list[User]:
    async def read() -> list[User]:
        db = Database(url)
        try:
            async with db.read() as session:
                return list(await session.scalars(select(User).order_by(User.id)))
        finally:
            await db.dispose()

    return asyncio.run(read())


def create(email: str, password: str = PASSWORD, role: str = "operator", *extra: str) -> int:
    return main(
        ["user", "create", "--email", email, "--password", password, "--role", role, *extra]
    )


def test_user_create_then_duplicate(hub_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert create("op@example.com", PASSWORD, "operator", "--name", "Olga") == 0
    out, err = capsys.readouterr()
    assert out.startswith("created operator op@example.com")
    assert err == ""

    [user] = stored_users(hub_db)
    assert user.email == "op@example.com"
    assert user.name == "Olga"
    assert user.role == "operator"
    assert user.active
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert verify_password(user.password_hash, PASSWORD)
    assert not verify_password(user.password_hash, PASSWORD + "!")

    # The same address again, in another case: refused, naming the option.
    assert create("OP@Example.com", "another password", "admin") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--email" in err
    assert "already exists" in err
    assert len(stored_users(hub_db)) == 1


@pytest.mark.parametrize(
    ("email", "password", "option"),
    [
        ("op@example.com", "short", "--password"),
        ("not-an-address", PASSWORD, "--email"),
        ("", PASSWORD, "--email"),
    ],
    ids=["short-password", "bad-email", "empty-email"],
)
def test_user_create_refuses_bad_input(
    hub_db: str, capsys: pytest.CaptureFixture[str], email: str, password: str, option: str
) -> None:
    assert create(email, password) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("hub: ")
    assert option in err
    assert stored_users(hub_db) == []


def test_user_create_rejects_an_unknown_role(
    hub_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        create("op@example.com", PASSWORD, "superuser")
    assert info.value.code == 2
    _out, err = capsys.readouterr()
    assert "--role" in err
    assert stored_users(hub_db) == []


@pytest.mark.parametrize("role", ["operator", "manager", "admin"])
def test_user_create_every_role(hub_db: str, role: str) -> None:
    assert create(f"{role}@example.com", PASSWORD, role) == 0
    [user] = stored_users(hub_db)
    assert user.role == role
    assert user.name == role  # defaults to the address's local part


def test_user_create_migrates_a_new_sqlite_database(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No HUB_DATABASE_URL: the default SQLite file in the data dir is created and migrated."""
    assert create("first@example.com", PASSWORD, "admin") == 0
    assert "created admin first@example.com" in capsys.readouterr().out
    database = cli_env / "data" / "hub.db"
    assert database.exists()
    [user] = stored_users(f"sqlite+aiosqlite:///{database}")
    assert user.email == "first@example.com"


def test_user_create_with_a_bad_config_exits_2(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HUB_PORT", "eighty")
    assert create("op@example.com") == 2
    _out, err = capsys.readouterr()
    assert "HUB_PORT" in err
    assert "hub check-config" in err


@pytest.mark.skipif(
    PG_URL is not None,
    reason="HUB_TEST_DATABASE_URL is set: PostgreSQL is migrated by the fixtures",
)
def test_migrate_creates_the_tables(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = cli_env / "data" / "hub.db"
    assert not database.exists()
    assert main(["migrate"]) == 0
    out, _err = capsys.readouterr()
    assert "database is up to date" in out
    assert database.exists()

    def tables() -> set[str]:
        with contextlib.closing(sqlite3.connect(database)) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name for (name,) in rows}

    created = tables()
    assert {"users", "api_tokens", "audit_log", "alembic_version"} <= created
    # Running it again is harmless.
    assert main(["migrate"]) == 0
    assert tables() == created


@pytest.mark.parametrize("command", ["web", "worker"])
def test_web_and_worker_without_redis_name_the_fix(
    hub_db: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert "HUB_REDIS_URL" in err and "hub up" in err
