"""`hub telegram set-webhook` and `hub telegram info` against the fake Bot API server."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from hub.settings import Settings
from hubcli.telegram import TelegramCommandError, add_parser, run, set_webhook, webhook_info
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import SECRET, TOKEN, config


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as server:
        yield server


def hub_settings(api: FakeBotAPI, public_url: str | None = "https://hub.example.com") -> Settings:
    return Settings(public_url=public_url, channels={"tg": config(api_base=api.base)})


async def test_set_webhook_registers_url_secret_and_allowed_updates(api: FakeBotAPI) -> None:
    lines = await set_webhook(hub_settings(api), None)
    (call,) = api.calls
    assert (call.token, call.method) == (TOKEN, "setWebhook")
    assert call.params["url"] == "https://hub.example.com/webhooks/telegram/tg"
    assert call.params["secret_token"] == SECRET
    assert json.loads(call.params["allowed_updates"]) == [
        "message",
        "edited_message",
        "callback_query",
    ]
    assert lines == [
        "tg: webhook set to https://hub.example.com/webhooks/telegram/tg "
        "(message, edited_message, callback_query)"
    ]


async def test_info_shows_the_bot_and_its_webhook(api: FakeBotAPI) -> None:
    settings = hub_settings(api)
    before = await webhook_info(settings, "tg")
    assert before[0] == f"tg: bot @shop_example_bot (id 7000000001) via {api.base}"
    assert "(none: updates are not delivered)" in before[1]
    assert "run `hub telegram set-webhook`" in before[-1]
    await set_webhook(settings, "tg")
    after = await webhook_info(settings, "tg")
    assert after[1].endswith("https://hub.example.com/webhooks/telegram/tg")
    assert after[2].endswith("3") and not any("expected url" in line for line in after)
    assert all(TOKEN not in line for line in before + after)


@pytest.mark.parametrize(
    ("public_url", "name", "message"),
    [
        (None, None, "public_url (HUB_PUBLIC_URL) is not set"),
        ("http://hub.example.com", None, "Telegram only calls https:// webhooks"),
        ("https://hub.example.com", "other", "no telegram channel 'other'; configured: tg"),
    ],
)
async def test_what_to_fix_is_named(
    api: FakeBotAPI, public_url: str | None, name: str | None, message: str
) -> None:
    with pytest.raises(TelegramCommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await set_webhook(hub_settings(api, public_url), name)
    assert api.calls == []


async def test_a_refusal_from_telegram_is_reported(api: FakeBotAPI) -> None:
    api.fail(401, "Unauthorized")
    with pytest.raises(TelegramCommandError, match="tg: Telegram refused: Unauthorized"):
        await set_webhook(hub_settings(api), "tg")


async def test_no_telegram_channel_configured() -> None:
    with pytest.raises(TelegramCommandError, match="no telegram channel is configured"):
        await webhook_info(Settings(), None)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """run() configures structlog to print to the sys.stderr of the moment (capsys's, closed
    after the test): put the previous configuration back so later tests do not log into it."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_the_parser_routes_both_actions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("HUB_DATABASE_URL", "HUB_PUBLIC_URL", "HUB_REDIS_URL", "HUB_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    parser = argparse.ArgumentParser(prog="hub")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args: Any = parser.parse_args(["telegram", "set-webhook", "tg"])
    assert (args.telegram_command, args.channel, args.func) == ("set-webhook", "tg", run)
    assert parser.parse_args(["telegram", "info"]).channel is None
    empty = tmp_path / "hub.toml"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("HUB_CONFIG", str(empty))
    assert run(parser.parse_args(["telegram", "info"])) == 2
    assert "no telegram channel is configured" in capsys.readouterr().err
