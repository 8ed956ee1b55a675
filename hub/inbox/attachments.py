"""Attachments people send: fetched from the provider by the worker, kept content-addressed under
the data dir (the sha256 of the bytes names the file, so identical files are stored once), and
recorded on the timeline item: `url` to download it from the API, or `error` in words."""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import structlog

from hub.channels.base import MAX_DOWNLOAD_BYTES, Channel, Downloaded, DownloadError
from hub.db import Database
from hub.inbox.live import LiveEvent
from hub.inbox.timeline import item_to_dict
from hub.models import TimelineItem

log = structlog.get_logger(__name__)

MAX_ATTACHMENT_BYTES = MAX_DOWNLOAD_BYTES  # 25 MiB
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# What a stored file may be served as: a plain media type, nothing that could smuggle a header.
CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
API_PATH = "/api/attachments/"


def attachments_root(data_dir: Path) -> Path:
    return Path(data_dir) / "attachments"


def is_sha256(value: str) -> bool:
    return bool(SHA256_RE.match(value))


def blob_path(data_dir: Path, digest: str) -> Path:
    """ab/cd/<sha>: sharded so no directory grows too large. Only a validated digest."""
    if not is_sha256(digest):
        raise ValueError("not a sha256 hex digest")
    return attachments_root(data_dir) / digest[:2] / digest[2:4] / digest


def clean_content_type(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.split(";")[0].strip().lower()
    return value if CONTENT_TYPE_RE.match(value) else None


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    path: Path
    content_type: str = "application/octet-stream"
    name: str = "attachment"


def _write_atomically(path: Path, data: bytes) -> None:
    """A temp file in the same directory, fsynced, then os.replace: a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_bytes(data_dir: Path, data: bytes, content_type: str | None, name: str) -> StoredFile:
    """Keep the bytes under their sha256 (once: identical files share one blob), with a small
    sidecar holding the first name and content type seen, which the API serves them as."""
    digest = sha256(data).hexdigest()
    path = blob_path(data_dir, digest)
    if not (path.exists() and path.stat().st_size == len(data)):
        _write_atomically(path, data)
    meta = path.with_name(f"{digest}.json")
    kind = clean_content_type(content_type) or "application/octet-stream"
    if not meta.exists():
        _write_atomically(meta, json.dumps({"content_type": kind, "name": name}).encode())
    return StoredFile(digest, len(data), path, kind, name)


def find_stored(data_dir: Path, digest: str) -> StoredFile | None:
    """The stored file for a digest, or None; never a path outside the store."""
    if not is_sha256(digest):
        return None
    path = blob_path(data_dir, digest)
    if not path.is_file():
        return None
    kind, name = "application/octet-stream", "attachment"
    try:
        meta = json.loads(path.with_name(f"{digest}.json").read_text())
        kind = clean_content_type(meta.get("content_type")) or kind
        name = str(meta.get("name") or name)
    except (OSError, ValueError, AttributeError):
        pass
    return StoredFile(digest, path.stat().st_size, path, kind, name)


def safe_filename(name: str, default: str = "attachment") -> str:
    """A name fit for Content-Disposition: no path, no quotes or control characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:120]
    return cleaned or default


def stored_fields(stored: StoredFile) -> dict[str, Any]:
    return {
        "url": f"{API_PATH}{stored.sha256}",
        "sha256": stored.sha256,
        "size": stored.size,
        "stored": True,
    }


def pending(attachment: Mapping[str, Any]) -> bool:
    """Still to fetch: neither stored nor given up on."""
    return not attachment.get("stored") and not attachment.get("error")


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """The same provider file (an edit may have replaced the item's media meanwhile)."""
    return (a.get("ref"), a.get("source_url"), a.get("name")) == (
        b.get("ref"),
        b.get("source_url"),
        b.get("name"),
    )


async def record_attachments(
    db: Database, item_id: int, updates: Mapping[int, tuple[Mapping[str, Any], dict[str, Any]]]
) -> LiveEvent | None:
    """Merge each index's new fields into the item's attachments (the row locked, so a
    concurrent edit is not lost); the message.updated event is returned for the caller to
    publish after commit. `updates`: index -> (the attachment as read, the fields to set)."""
    if not updates:
        return None
    async with db.write() as session:
        item = await session.get(TimelineItem, item_id, with_for_update=True)
        if item is None:
            return None
        attachments = [dict(a) for a in item.attachments or []]
        changed = False
        for index, (seen, fields) in updates.items():
            if index < len(attachments) and _same(attachments[index], seen):
                attachments[index].update(fields)
                changed = True
        if not changed:
            return None
        item.attachments = attachments  # a new list: the JSON column sees the change
        await session.flush()
        return LiveEvent("message.updated", item_to_dict(item))


async def _download(
    channel: Channel, attachment: Mapping[str, Any], client: Any, max_bytes: int
) -> Downloaded | None:
    """The channel's download; anything unforeseen (a bug, a library's new error) is logged and
    tried again later like an outage, then noted on the item, instead of failing silently."""
    try:
        return await channel.download(attachment, client, max_bytes)
    except DownloadError:
        raise
    except Exception as exc:
        # Only the class: the message or a traceback could name a URL that holds a token.
        log.error("attachment_fetch_crashed", channel=channel.name, error=type(exc).__name__)
        raise DownloadError(
            f"could not fetch the file ({type(exc).__name__})", retryable=True
        ) from None


@dataclass(frozen=True)
class FetchOutcome:
    live: tuple[LiveEvent, ...] = ()
    stored: int = 0
    failed: int = 0
    # A provider that was down: the job runs again (after retry_after, when given).
    retry: DownloadError | None = None


async def fetch_item_attachments(
    db: Database,
    channels: Mapping[str, Channel],
    data_dir: Path,
    item_id: int,
    client: Any,
    *,
    final: bool = False,
    max_bytes: int = MAX_ATTACHMENT_BYTES,
) -> FetchOutcome:
    """Fetch and keep every pending attachment of one item. Idempotent: stored or failed ones
    are skipped. Transient failures are returned as `retry` (recorded as errors when `final`)."""
    async with db.read() as session:
        item = await session.get(TimelineItem, item_id)
        if item is None:
            return FetchOutcome()
        attachments = [dict(a) for a in item.attachments or []]
        channel_name = item.channel
    todo = [(i, a) for i, a in enumerate(attachments) if pending(a)]
    if not todo:
        return FetchOutcome()
    channel = channels.get(channel_name)
    updates: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = {}
    retry: DownloadError | None = None
    stored = failed = 0
    for index, attachment in todo:
        size = attachment.get("size")
        if channel is None:
            updates[index] = (attachment, {"error": f"channel {channel_name!r} is not configured"})
            failed += 1
            continue
        if isinstance(size, int) and size > max_bytes:
            reason = f"file too large to keep ({size / 1048576:.1f} MB, limit {max_bytes >> 20} MB)"
            updates[index] = (attachment, {"error": reason})
            failed += 1
            continue
        try:
            got: Downloaded | None = await _download(channel, attachment, client, max_bytes)
        except DownloadError as exc:
            if exc.retryable and not final:
                log.warning("attachment_fetch_deferred", item_id=item_id, error=exc.reason)
                retry = retry or exc
                continue
            reason = f"{exc.reason} (gave up after retrying)" if exc.retryable else exc.reason
            log.info("attachment_not_fetched", item_id=item_id, error=reason)
            updates[index] = (attachment, {"error": reason})
            failed += 1
            continue
        if got is None:  # nothing this channel can fetch: leave it as it came
            continue
        if len(got.data) > max_bytes:
            reason = f"file too large to keep (limit {max_bytes >> 20} MB)"
            updates[index] = (attachment, {"error": reason})
            failed += 1
            continue
        kind = attachment.get("content_type")
        if not clean_content_type(kind) or kind == "application/octet-stream":
            kind = got.content_type or kind
        name = str(attachment.get("name") or "attachment")
        blob = await asyncio.to_thread(store_bytes, data_dir, got.data, kind, name)
        fields = stored_fields(blob)
        if kind and kind != attachment.get("content_type"):
            fields["content_type"] = kind
        updates[index] = (attachment, fields)
        stored += 1
    event = await record_attachments(db, item_id, updates)
    log.info("attachments_fetched", item_id=item_id, stored=stored, failed=failed)
    return FetchOutcome((event,) if event else (), stored, failed, retry)
