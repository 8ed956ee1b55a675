"""`hub user deactivate`: the user's open work goes to the successor, errors name the option."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.models import User
from hubcli.main import main
from tests.hubcli.test_cli import cli_env, create, hub_db, restore_logging  # noqa: F401


def users(url: str) -> dict[str, bool]:
    async def read() -> dict[str, bool]:
        db = Database(url)
        try:
            async with db.read() as session:
                return {u.email: u.active for u in await session.scalars(select(User))}
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_deactivate_with_a_successor(hub_db: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert create("leaving@example.com") == 0
    assert create("boss@example.com", role="manager") == 0
    capsys.readouterr()
    assert main(["user", "deactivate", "--email", "leaving@example.com"]) == 2
    assert "has no manager" in capsys.readouterr().err
    args = [
        "user",
        "deactivate",
        "--email",
        "leaving@example.com",
        "--successor",
        "nobody@example.com",
    ]
    assert main(args) == 2
    assert "--successor: no user nobody@example.com" in capsys.readouterr().err
    args[-1] = "BOSS@example.com"
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("deactivated leaving@example.com: 0 conversation(s)")
    assert users(hub_db) == {"leaving@example.com": False, "boss@example.com": True}
    assert main(args) == 2
    assert "already deactivated" in capsys.readouterr().err
