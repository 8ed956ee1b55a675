"""The Telegram channel: a bot's webhook updates in, operator replies out, with aiogram."""

from hub.channels.telegram.channel import Telegram

__all__ = ["Telegram"]
