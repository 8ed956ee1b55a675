"""`hub telegram set-webhook [channel]` and `hub telegram info [channel]`: the Bot API calls
a user would otherwise craft by hand, made with the configured token and secret."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from hub.channels.registry import build_channels
from hub.channels.telegram import Telegram
from hub.log import configure_logging
from hub.settings import Settings, load_settings


class TelegramCommandError(Exception):
    """What the user must fix before the command can run, in one line."""


def telegram_channels(settings: Settings, name: str | None) -> list[Telegram]:
    found = [c for c in build_channels(settings).values() if isinstance(c, Telegram)]
    if not found:
        raise TelegramCommandError(
            'no telegram channel is configured: add a [channels.NAME] table with type = "telegram"'
        )
    if name is None:
        return found
    chosen = [c for c in found if c.name == name]
    if not chosen:
        known = ", ".join(c.name for c in found)
        raise TelegramCommandError(f"no telegram channel {name!r}; configured: {known}")
    return chosen


def webhook_url(settings: Settings, channel: Telegram) -> str:
    if not settings.public_url:
        raise TelegramCommandError(
            "public_url (HUB_PUBLIC_URL) is not set: Telegram needs the https:// URL "
            "where it reaches this hub"
        )
    if not settings.public_url.startswith("https://"):
        raise TelegramCommandError(
            f"public_url {settings.public_url!r}: Telegram only calls https:// webhooks"
        )
    return f"{settings.public_url}/webhooks/telegram/{channel.name}"


async def set_webhook(settings: Settings, name: str | None) -> list[str]:
    # aiogram loads here, not when `hub` builds its parser: it takes seconds to import.
    from aiogram.exceptions import TelegramAPIError

    from hub.channels.telegram.outbound import make_bot
    from hub.channels.telegram.updates import ALLOWED_UPDATES

    lines = []
    for channel in telegram_channels(settings, name):
        url = webhook_url(settings, channel)
        bot = make_bot(channel.bot_token, channel.api_base)
        try:
            await bot.set_webhook(
                url=url,
                secret_token=channel.webhook_secret.decode(),
                allowed_updates=list(ALLOWED_UPDATES),
            )
        except TelegramAPIError as exc:
            raise TelegramCommandError(f"{channel.name}: Telegram refused: {exc.message}") from None
        finally:
            await bot.session.close()
        lines.append(f"{channel.name}: webhook set to {url} ({', '.join(ALLOWED_UPDATES)})")
    return lines


def _info_lines(channel: Telegram, me: Any, info: Any, expected: str | None) -> list[str]:
    lines = [
        f"{channel.name}: bot @{me.username} (id {me.id}) via {channel.api_base}",
        f"  webhook url:      {info.url or '(none: updates are not delivered)'}",
        f"  pending updates:  {info.pending_update_count}",
        f"  allowed updates:  {', '.join(info.allowed_updates or []) or '(all)'}",
    ]
    if info.last_error_message:
        when = info.last_error_date.isoformat() if info.last_error_date else "?"
        lines.append(f"  last error:       {info.last_error_message} ({when})")
    if expected and info.url != expected:
        lines.append(f"  expected url:     {expected} (run `hub telegram set-webhook`)")
    return lines


async def webhook_info(settings: Settings, name: str | None) -> list[str]:
    from aiogram.exceptions import TelegramAPIError

    from hub.channels.telegram.outbound import make_bot

    lines = []
    for channel in telegram_channels(settings, name):
        expected = (
            f"{settings.public_url}/webhooks/telegram/{channel.name}"
            if settings.public_url
            else None
        )
        bot = make_bot(channel.bot_token, channel.api_base)
        try:
            me = await bot.get_me()
            info = await bot.get_webhook_info()
        except TelegramAPIError as exc:
            raise TelegramCommandError(f"{channel.name}: Telegram refused: {exc.message}") from None
        finally:
            await bot.session.close()
        lines.extend(_info_lines(channel, me, info, expected))
    return lines


def run(args: argparse.Namespace) -> int:
    from hubcli.serve import fail

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    action = set_webhook if args.telegram_command == "set-webhook" else webhook_info
    try:
        lines = asyncio.run(action(settings, args.channel))
    except TelegramCommandError as exc:
        return fail(str(exc))
    for line in lines:
        print(line)
    return 0


def add_parser(sub: Any) -> None:
    """The `telegram` command and its actions, on the `hub` parser's subcommands."""
    telegram = sub.add_parser("telegram", help="register and inspect Telegram bot webhooks")
    actions = telegram.add_subparsers(dest="telegram_command", required=True, metavar="ACTION")
    for action, help_text in (
        ("set-webhook", "point the bot's webhook at public_url with the secret"),
        ("info", "show the bot and its webhook as Telegram sees it (getWebhookInfo)"),
    ):
        parser = actions.add_parser(action, help=help_text)
        parser.add_argument("channel", nargs="?", help="a telegram channel name (default: all)")
        parser.set_defaults(func=run)
