"""Operator replies sent through the Bot API with aiogram: long texts split, errors classified."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from hub.channels.base import OutboundMessage, SendResult

log = structlog.get_logger(__name__)

MAX_TEXT = 4096  # Telegram's limit on one message's text, in characters
# A part after the first one is already on the user's screen: retrying the whole job would send
# it twice, so a flood wait in the middle is waited out here, this long at most.
MAX_INLINE_WAIT = 30.0
INLINE_ATTEMPTS = 3


class SharedSession(AiohttpSession):
    """aiogram's session on the worker's aiohttp client: one connection pool for every send,
    closed by the worker, not by us."""

    def __init__(self, client: aiohttp.ClientSession, api: TelegramAPIServer) -> None:
        super().__init__(api=api)
        self._client = client

    async def create_session(self) -> aiohttp.ClientSession:
        return self._client

    async def close(self) -> None:
        return None


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most `limit` characters, cut at a paragraph, line or word break when one is
    in the second half of the part, so words stay whole."""
    parts: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not parts:
        parts.append(text)
    return parts


def make_bot(token: str, api_base: str, client: Any = None) -> Bot:
    """aiogram's Bot on `api_base`, over the injected aiohttp client when there is one (the
    worker's); otherwise over a session of its own, which the caller closes."""
    api = TelegramAPIServer.from_base(api_base)
    if isinstance(client, aiohttp.ClientSession):
        return Bot(token, session=SharedSession(client, api))
    return Bot(token, session=AiohttpSession(api=api))


class Delivery:
    """Sends one message's parts with one Bot; never lets the token reach a log or an error."""

    def __init__(self, token: str, api_base: str, client: Any) -> None:
        self.token = token
        self.bot = make_bot(token, api_base, client)

    def redact(self, text: str) -> str:
        return text.replace(self.token, "<token>")

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            return await self._send_parts(message)
        finally:
            await self.bot.session.close()

    async def _send_parts(self, message: OutboundMessage) -> SendResult:
        parts = split_text(message.text)
        first_id: str | None = None
        for number, part in enumerate(parts, start=1):
            try:
                sent_id = await self._send_part(message.to, part, inline_wait=first_id is not None)
            except (TelegramAPIError, ClientDecodeError) as exc:
                result = self.failure(exc)
                if first_id is None:
                    return result
                # Earlier parts were delivered: a retry would repeat them, so stop here.
                error = f"sent {number - 1} of {len(parts)} parts, then: {result.error}"
                return SendResult("failed", external_id=first_id, error=error)
            first_id = first_id or sent_id
        return SendResult("sent", external_id=first_id)

    async def _send_part(self, chat_id: str, text: str, inline_wait: bool) -> str:
        for attempt in range(1, INLINE_ATTEMPTS + 1):
            try:
                sent = await self.bot.send_message(chat_id=chat_id, text=text)
            except TelegramRetryAfter as exc:
                if not inline_wait or exc.retry_after > MAX_INLINE_WAIT:
                    raise
                if attempt == INLINE_ATTEMPTS:
                    raise
                await asyncio.sleep(exc.retry_after)
                continue
            return f"{sent.chat.id}:{sent.message_id}"
        raise AssertionError("unreachable")

    def failure(self, exc: TelegramAPIError | ClientDecodeError) -> SendResult:
        if isinstance(exc, ClientDecodeError):  # a proxy's error page, not the Bot API
            log.warning("telegram_send_retry", error="the answer was not Bot API JSON")
            return SendResult(
                "failed",
                error="Telegram answered something that is not Bot API JSON",
                retryable=True,
            )
        reason = self.redact(exc.message)
        if isinstance(exc, TelegramEntityTooLarge):  # a network error by class, but final
            return SendResult("failed", error=f"Telegram refused: {reason}")
        if isinstance(exc, TelegramRetryAfter):
            return SendResult(
                "failed",
                error=f"Telegram flood control: retry in {exc.retry_after} s",
                retryable=True,
                retry_after=float(exc.retry_after),
            )
        if isinstance(exc, TelegramForbiddenError):
            error = f"Telegram refused: {reason} (the user blocked the bot or left the chat)"
            return SendResult("failed", error=error)
        if isinstance(exc, TelegramNetworkError | TelegramServerError):
            log.warning("telegram_send_retry", error=reason)
            return SendResult("failed", error=f"Telegram unreachable: {reason}", retryable=True)
        return SendResult("failed", error=f"Telegram refused: {reason}")
