"""Files people send the bot: getFile through aiogram, then the bytes from the Bot API's file
URL, with Telegram's own limit checked before anything is downloaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from hub.channels.base import Downloaded, DownloadError
from hub.channels.downloads import (
    DOWNLOAD_SECONDS,
    read_capped,
    status_error,
    too_large,
    unreachable,
)
from hub.channels.telegram.outbound import make_bot

# The cloud Bot API gives bots files of at most 20 MB (getFile refuses larger ones).
BOT_API_MAX_DOWNLOAD = 20 * 1024 * 1024
PROVIDER = "Telegram"


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def download_file(
    token: str, api_base: str, attachment: Mapping[str, Any], client: Any, max_bytes: int
) -> Downloaded | None:
    file_id = attachment.get("ref")
    if not isinstance(file_id, str) or not file_id:
        return None
    limit = min(max_bytes, BOT_API_MAX_DOWNLOAD)
    size = _size(attachment.get("size"))
    if size is not None and size > limit:
        raise too_large(size, limit, PROVIDER)
    bot = make_bot(token, api_base, client)
    try:
        try:
            file = await bot.get_file(file_id)
        except TelegramRetryAfter as exc:
            raise DownloadError(
                f"{PROVIDER} flood control: retry in {exc.retry_after} s",
                retryable=True,
                retry_after=float(exc.retry_after),
            ) from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            reason = exc.message.replace(token, "<token>")
            raise DownloadError(f"{PROVIDER} unreachable: {reason}", retryable=True) from None
        except ClientDecodeError:
            raise DownloadError(
                f"{PROVIDER} answered something that is not Bot API JSON", retryable=True
            ) from None
        except TelegramAPIError as exc:  # "file is too big", "invalid file_id", ...
            reason = exc.message.replace(token, "<token>")
            raise DownloadError(f"{PROVIDER} refused the file: {reason}") from None
        if _size(file.file_size) is not None and int(file.file_size or 0) > limit:
            raise too_large(file.file_size, limit, PROVIDER)
        if not file.file_path:
            raise DownloadError(f"{PROVIDER} gave no path for the file")
        url = bot.session.api.file_url(token, file.file_path)
        session = client if isinstance(client, aiohttp.ClientSession) else None
        own = session is None
        http = session or aiohttp.ClientSession()
        try:
            async with http.get(
                url, timeout=aiohttp.ClientTimeout(total=DOWNLOAD_SECONDS)
            ) as response:
                if response.status != 200:
                    raise status_error(response.status, PROVIDER)
                return await read_capped(response, limit, PROVIDER)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(exc, PROVIDER) from None
        finally:
            if own:
                await http.close()
    finally:
        await bot.session.close()
