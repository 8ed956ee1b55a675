"""Operator replies sent through the Bot API with aiogram: long texts split, errors classified."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import Response  # type: ignore[attr-defined]
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
from aiogram.methods import EditMessageText, GetFile, SendDocument, SendMessage, SendPhoto
from aiogram.types import FSInputFile, Message

from hub.channels.base import OutboundMessage, SendResult
from hub.inbox.attachments import API_PATH, StoredFile, find_stored

# One Bot API call that sends a message (text, photo or document).
Step = Callable[[], Awaitable[Message]]
MAX_CAPTION = 1024  # Telegram's limit on a caption, in characters
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto's limit; larger images go as documents
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})

# A button under a hub message: (label, callback_data or None, url or None).
ButtonSpec = tuple[str, str | None, str | None]

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


# aiogram parses every answer as Response[<the method's result type>]; pydantic caches such
# parametrised models only weakly, so without a strong reference each call built the model
# anew (pydantic schema generation, milliseconds of CPU per Bot API call).
_RESPONSE_MODELS = [
    Response[method.__returning__]  # type: ignore[name-defined]
    for method in (SendMessage, SendPhoto, SendDocument, EditMessageText, GetFile)
]

# Bots over a worker's client, kept while that client is open: building one builds an SSL
# context (tens of milliseconds of CPU), far more than the request it would send.
_SHARED_BOTS: dict[int, tuple[aiohttp.ClientSession, dict[tuple[str, str], Bot]]] = {}


def make_bot(token: str, api_base: str, client: Any = None) -> Bot:
    """aiogram's Bot on `api_base`, over the injected aiohttp client when there is one (the
    worker's; one Bot per client, token and server, reused); otherwise over a session of its
    own, which the caller closes."""
    api = TelegramAPIServer.from_base(api_base)
    if not isinstance(client, aiohttp.ClientSession):
        return Bot(token, session=AiohttpSession(api=api))
    for key, (held, _bots) in list(_SHARED_BOTS.items()):
        if held.closed:
            del _SHARED_BOTS[key]
    _held, bots = _SHARED_BOTS.setdefault(id(client), (client, {}))
    bot = bots.get((token, api_base))
    if bot is None:
        bot = bots[(token, api_base)] = Bot(token, session=SharedSession(client, api))
    return bot


class Delivery:
    """Sends one message's parts with one Bot; never lets the token reach a log or an error."""

    def __init__(self, token: str, api_base: str, client: Any) -> None:
        self.token = token
        self.bot = make_bot(token, api_base, client)

    def redact(self, text: str) -> str:
        return text.replace(self.token, "<token>")

    async def send(self, message: OutboundMessage, data_dir: Path | None = None) -> SendResult:
        try:
            steps = self._steps(message, data_dir)
            if isinstance(steps, SendResult):
                return steps
            return await self._send_steps(steps)
        finally:
            await self.bot.session.close()

    def _steps(self, message: OutboundMessage, data_dir: Path | None) -> list[Step] | SendResult:
        """One Bot API call per part: the text (split at 4096 characters) and each file (a
        photo or a document, the text as the first file's caption when it fits in one)."""
        files: list[StoredFile] = []
        for attachment in message.attachments:
            digest = (attachment.url or "").removeprefix(API_PATH)
            stored = find_stored(data_dir, digest) if data_dir is not None else None
            if stored is None:
                return SendResult("failed", error=f"file {attachment.name!r} is no longer stored")
            files.append(replace(stored, name=attachment.name or stored.name))
        text = message.text.strip()
        caption = text if files and len(text) <= MAX_CAPTION else None
        steps: list[Step] = []
        if text and caption is None:
            steps += [partial(self.bot.send_message, message.to, part) for part in split_text(text)]
        for number, stored in enumerate(files):
            upload = FSInputFile(stored.path, filename=stored.name)
            first = caption if number == 0 else None
            if stored.content_type in PHOTO_TYPES and stored.size <= MAX_PHOTO_BYTES:
                steps.append(partial(self.bot.send_photo, message.to, upload, caption=first))
            else:
                steps.append(partial(self.bot.send_document, message.to, upload, caption=first))
        return steps

    async def _send_steps(self, steps: list[Step]) -> SendResult:
        first_id: str | None = None
        for number, step in enumerate(steps, start=1):
            try:
                sent_id = await self._send_step(step, inline_wait=first_id is not None)
            except (TelegramAPIError, ClientDecodeError) as exc:
                result = self.failure(exc)
                if first_id is None:
                    return result
                # Earlier parts were delivered: a retry would repeat them, so stop here.
                error = f"sent {number - 1} of {len(steps)} parts, then: {result.error}"
                return SendResult("failed", external_id=first_id, error=error)
            first_id = first_id or sent_id
        return SendResult("sent", external_id=first_id)

    async def _send_step(self, step: Step, inline_wait: bool) -> str:
        for attempt in range(1, INLINE_ATTEMPTS + 1):
            try:
                sent = await step()
            except TelegramRetryAfter as exc:
                if not inline_wait or exc.retry_after > MAX_INLINE_WAIT:
                    raise
                if attempt == INLINE_ATTEMPTS:
                    raise
                await asyncio.sleep(exc.retry_after)
                continue
            return f"{sent.chat.id}:{sent.message_id}"
        raise AssertionError("unreachable")

    async def notice(
        self,
        chat_id: str,
        text: str,
        buttons: Sequence[ButtonSpec],
        edit_message_id: int | None = None,
    ) -> SendResult:
        """A message from the hub to its own staff, with inline buttons in one row; or, with
        edit_message_id, that message rewritten (buttons gone when there are none)."""
        from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

        row = [
            InlineKeyboardButton(text=label, callback_data=data, url=url)
            for label, data, url in buttons
        ]
        markup = InlineKeyboardMarkup(inline_keyboard=[row]) if row else None
        text = split_text(text)[0]
        try:
            if edit_message_id is None:
                sent = await self.bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)
                return SendResult("sent", external_id=f"{sent.chat.id}:{sent.message_id}")
            await self.bot.edit_message_text(
                chat_id=chat_id, message_id=edit_message_id, text=text, reply_markup=markup
            )
            return SendResult("sent", external_id=f"{chat_id}:{edit_message_id}")
        except (TelegramAPIError, ClientDecodeError) as exc:
            if "message is not modified" in str(exc):
                return SendResult("sent", external_id=f"{chat_id}:{edit_message_id}")
            return self.failure(exc)
        finally:
            await self.bot.session.close()

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
