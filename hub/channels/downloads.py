"""Fetching a provider's file over the worker's aiohttp client: a size cap while streaming, and
errors in words that never carry the URL (it may hold a token)."""

from __future__ import annotations

import aiohttp

from hub.channels.base import Downloaded, DownloadError

CHUNK = 64 * 1024
DOWNLOAD_SECONDS = 60.0


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def too_large(size: int | None, limit: int, provider: str) -> DownloadError:
    what = f"{megabytes(size)}, " if size is not None else ""
    return DownloadError(f"file too large to fetch ({what}{provider} limit {megabytes(limit)})")


async def read_capped(
    response: aiohttp.ClientResponse, max_bytes: int, provider: str
) -> Downloaded:
    """The body of a 200 answer, at most `max_bytes` (checked on Content-Length first, then
    while streaming, so a lying or absent length never fills the disk)."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_large(response.content_length, max_bytes, provider)
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        body.extend(chunk)
        if len(body) > max_bytes:
            raise too_large(None, max_bytes, provider)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or None
    return Downloaded(bytes(body), content_type)


def status_error(status: int, provider: str, what: str = "the file") -> DownloadError:
    """A non-200 answer: 429 and 5xx are worth another try later; the rest are final."""
    if status == 429 or status >= 500:
        return DownloadError(f"{provider} answered {status} for {what}", retryable=True)
    if status in (401, 403):
        return DownloadError(f"{provider} refused to give {what} ({status}: check the credentials)")
    if status in (404, 410):
        return DownloadError(f"{provider} no longer has {what} ({status}: deleted or expired)")
    return DownloadError(f"{provider} refused to give {what} ({status})")


def unreachable(exc: BaseException, provider: str) -> DownloadError:
    # The exception's own text can name the URL: only its class is kept.
    return DownloadError(f"{provider} unreachable: {type(exc).__name__}", retryable=True)
