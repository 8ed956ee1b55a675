"""The Telegram channel class: configuration, webhook trio (verify, parse, ack) and send."""

from __future__ import annotations

import hmac
import importlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hub.channels.base import (
    MAX_DOWNLOAD_BYTES,
    Channel,
    Downloaded,
    InboundEvent,
    InboundRequest,
    OutboundMessage,
    ProviderAnswer,
    SendResult,
)
from hub.settings import ChannelConfig, Key, Settings

# aiogram builds hundreds of pydantic models on import (seconds on a small machine), so its
# modules load when a Telegram channel is configured, not whenever `hub` starts.
AIOGRAM_MODULES = ("hub.channels.telegram.updates", "hub.channels.telegram.outbound")
# The owners of the hub's own buttons and /start codes (reminder notices, account linking).
HANDLER_MODULES = ("hub.notify.actions",)
CHANNEL_TYPE = "telegram"

DEFAULT_API_BASE = "https://api.telegram.org"
VERIFY_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# What setWebhook accepts as secret_token.
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class Telegram(Channel):
    type: ClassVar[str] = CHANNEL_TYPE
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"inbound", "outbound", "attachments", "send_files"}
    )
    config_keys: ClassVar[Mapping[str, Key]] = {
        "bot_token": Key(str, required=True, secret=True),
        "webhook_secret": Key(str, required=True, secret=True),
        "api_base": Key(str, default=DEFAULT_API_BASE),
    }
    reject_status: ClassVar[int] = 401
    # A conversation's thread_key is its chat id; a contact's telegram identity is its user id,
    # which is also the chat id of the private chat with the bot.
    address_kind: ClassVar[str | None] = "telegram"

    def __init__(self, config: ChannelConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self.bot_token: str = config["bot_token"]
        self.webhook_secret: bytes = str(config["webhook_secret"]).encode()
        self.api_base: str = str(config.get("api_base") or DEFAULT_API_BASE).rstrip("/")
        for module in AIOGRAM_MODULES + HANDLER_MODULES:  # loaded now, not on the first update
            importlib.import_module(module)

    @classmethod
    def check_config(cls, name: str, values: Mapping[str, Any]) -> Sequence[str]:
        problems = []
        token = values.get("bot_token")
        if isinstance(token, str):
            from aiogram.utils.token import TokenValidationError, validate_token

            try:
                validate_token(token)
            except TokenValidationError:
                problems.append(
                    "bot_token: not a bot token like '123456:ABC-DEF...' (ask @BotFather)"
                )
        secret = values.get("webhook_secret")
        if isinstance(secret, str) and not SECRET_RE.match(secret):
            problems.append(
                "webhook_secret: 1 to 256 characters of letters, digits, '_' or '-' "
                "(what Telegram accepts as secret_token)"
            )
        base = values.get("api_base")
        if isinstance(base, str) and not re.match(r"^https?://[^/\s]+(/\S*)?$", base):
            problems.append(f"api_base: {base!r} is not an http(s) URL")
        return problems

    @property
    def bot_id(self) -> str:
        """The bot's user id: the token's public half."""
        return self.bot_token.partition(":")[0]

    def describe(self) -> str:
        return f"telegram bot {self.bot_id} via {self.api_base}"

    def verify(self, request: InboundRequest) -> bool:
        given = request.header(VERIFY_HEADER).encode()
        return bool(given) and hmac.compare_digest(given, self.webhook_secret)

    def parse(self, request: InboundRequest) -> list[InboundEvent]:
        from hub.channels.telegram.updates import read_update, update_events

        return update_events(self.name, read_update(request.body))

    def ack(self, events: Sequence[InboundEvent]) -> ProviderAnswer:
        return ProviderAnswer()

    async def send(self, message: OutboundMessage, client: Any) -> SendResult:
        from hub.channels.telegram.outbound import Delivery

        delivery = Delivery(self.bot_token, self.api_base, client)
        return await delivery.send(message, self.settings.data_dir)

    async def notice(
        self,
        chat_id: str,
        text: str,
        buttons: Sequence[tuple[str, str | None, str | None]],
        client: Any,
        edit_message_id: int | None = None,
    ) -> SendResult:
        """A message to a staff member's private chat with the bot, with inline buttons
        (label, callback_data, url); with edit_message_id, that message rewritten."""
        from hub.channels.telegram.outbound import Delivery

        delivery = Delivery(self.bot_token, self.api_base, client)
        return await delivery.notice(chat_id, text, buttons, edit_message_id)

    async def download(
        self, attachment: Mapping[str, Any], client: Any, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> Downloaded | None:
        """getFile, then the file's bytes; files over the Bot API's 20 MB are refused unasked."""
        from hub.channels.telegram.files import download_file

        return await download_file(self.bot_token, self.api_base, attachment, client, max_bytes)
