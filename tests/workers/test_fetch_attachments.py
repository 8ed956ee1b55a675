"""Attachments end to end: an update through the real webhook, the fetch_attachments job on a real
arq worker against a fake provider (Telegram's getFile + file URL, Twilio's media URLs behind
basic auth), the file kept content-addressed, and served by the API to logged-in operators."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.channels.base import (
    Attachment,
    Channel,
    Downloaded,
    DownloadError,
    InboundEvent,
    Sender,
)
from hub.db import Database
from hub.inbox.attachments import (
    FetchOutcome,
    blob_path,
    fetch_item_attachments,
    find_stored,
    safe_filename,
    store_bytes,
)
from hub.inbox.ingest import ingest
from hub.models import TimelineItem
from hub.runtime import Runtime
from hub.settings import ChannelConfig, Settings
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_telegram import SECRET, TOKEN, config, payload
from tests.channels.test_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FORM,
    PUBLIC_URL,
    sign,
    twilio_config,
)
from tests.channels.test_twilio import channel as twilio_channel
from tests.channels.test_twilio import payload as twilio_payload
from tests.conftest import MakeClient, auth
from workers.settings import make_worker, stop_worker

Client = TestClient[Any, Any]
PHOTO_ID = "AgACAgIAAxkBAAIBZmdEAAFr0largeAAdQQ"  # the largest size in photo_caption.json
JPEG = b"\xff\xd8\xff\xe0" + b"grey sofa " * 500 + b"\xff\xd9"


async def items(db: Database) -> list[TimelineItem]:
    async with db.read() as session:
        return list(await session.scalars(select(TimelineItem).order_by(TimelineItem.id)))


async def run_until_done(runtime: Runtime, job_ids: list[str], seconds: float = 30) -> None:
    """A real worker until these jobs have finished (their results are kept), retries included;
    other jobs deferred for later (a callback reminder) do not keep it running."""
    worker = make_worker(runtime, poll_delay=0.05)
    task = asyncio.create_task(worker.async_run())
    keys = [f"arq:result:{runtime.settings.redis_prefix}{job_id}" for job_id in job_ids]
    try:
        async with asyncio.timeout(seconds):
            while not all([await runtime.redis.exists(key) for key in keys]):
                await asyncio.sleep(0.05)
    finally:
        await stop_worker(worker)
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_jobs(settings: Settings, db: Database, **overrides: Any) -> None:
    """The fetch jobs of every item with attachments stored so far, on a real worker."""
    ids = [item.id for item in await items(db) if item.attachments]
    runtime = Runtime.open(replace(settings, **overrides))
    try:
        await run_until_done(runtime, [f"fetch_attachments:{i}" for i in ids])
    finally:
        await runtime.close()


async def post_update(client: Client, body: dict[str, Any]) -> None:
    response = await client.post(
        "/webhooks/telegram/tg",
        data=json.dumps(body),
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status == 200, await response.text()


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as api:
        yield api


async def test_a_telegram_photo_is_fetched_stored_and_served_to_operators_only(
    make_client: MakeClient, settings: Settings, db: Database, bot_api: FakeBotAPI, token: str
) -> None:
    bot_api.files[PHOTO_ID] = JPEG
    channels = {"tg": config(api_base=bot_api.base)}
    client: Client = await make_client(channels=channels)
    await post_update(client, payload("photo_caption"))
    await post_update(client, payload("photo_caption"))  # redelivered: fetched once all the same
    await run_jobs(settings, db, channels=channels)

    digest = hashlib.sha256(JPEG).hexdigest()
    (photo,) = await items(db)
    (attachment,) = photo.attachments
    assert attachment | {} == {
        "name": "photo_AQADaMsxG2ItAAFy.jpg",
        "content_type": "image/jpeg",
        "size": len(JPEG),
        "url": f"/api/attachments/{digest}",
        "sha256": digest,
        "stored": True,
        "ref": PHOTO_ID,
    }
    assert [c.params["file_id"] for c in bot_api.sent("getFile")] == [PHOTO_ID]
    assert len(bot_api.downloads) == 1 and all(c.token == TOKEN for c in bot_api.calls)
    path = blob_path(settings.data_dir, digest)
    assert path == settings.data_dir / "attachments" / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == JPEG

    response = await client.get(attachment["url"], headers=auth(token))
    assert response.status == 200
    assert await response.read() == JPEG
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="photo_AQADaMsxG2ItAAFy.jpg"'
    )
    assert (await client.get(attachment["url"])).status == 401
    bad = await client.get("/api/attachments/..%2F..%2Fhub.db", headers=auth(token))
    assert bad.status in (400, 404)
    assert (await client.get("/api/attachments/" + "A" * 64, headers=auth(token))).status == 400
    unknown = await client.get("/api/attachments/" + "0" * 64, headers=auth(token))
    assert unknown.status == 404

    # The job again (a stale retry, a sweep): nothing is fetched twice.
    runtime = Runtime.open(replace(settings, channels=channels))
    try:
        await runtime.redis.delete(
            f"arq:result:{settings.redis_prefix}fetch_attachments:{photo.id}"
        )
        await runtime.enqueue("fetch_attachments", photo.id, job_id=f"fetch_attachments:{photo.id}")
        await run_until_done(runtime, [f"fetch_attachments:{photo.id}"])
    finally:
        await runtime.close()
    assert len(bot_api.sent("getFile")) == 1 and len(bot_api.downloads) == 1


async def test_a_file_over_telegrams_20_mb_gets_a_note_and_is_never_downloaded(
    make_client: MakeClient, settings: Settings, db: Database, bot_api: FakeBotAPI
) -> None:
    bot_api.files[PHOTO_ID] = JPEG
    channels = {"tg": config(api_base=bot_api.base)}
    client: Client = await make_client(channels=channels)
    body = payload("photo_caption")
    body["message"]["photo"][-1]["file_size"] = 21 * 1024 * 1024
    await post_update(client, body)
    await run_jobs(settings, db, channels=channels)
    (photo,) = await items(db)
    (attachment,) = photo.attachments
    assert attachment["url"] is None and "stored" not in attachment
    assert attachment["error"] == "file too large to fetch (21.0 MB, Telegram limit 20.0 MB)"
    assert bot_api.sent("getFile") == [] and bot_api.downloads == []


async def test_a_file_telegram_refuses_gets_the_reason_without_the_token(
    make_client: MakeClient, settings: Settings, db: Database, bot_api: FakeBotAPI
) -> None:
    channels = {"tg": config(api_base=bot_api.base)}
    client: Client = await make_client(channels=channels)
    await post_update(client, payload("photo_caption"))  # the fake has no such file
    await run_jobs(settings, db, channels=channels)
    (photo,) = await items(db)
    error = photo.attachments[0]["error"]
    assert error == "Telegram refused the file: Bad Request: invalid file_id"
    assert TOKEN not in error


@dataclass
class FakeMedia:
    """Twilio's media URLs: the bytes only with the account's basic auth, after a redirect to
    the media store on another origin, as Twilio does; a 500 first for those in `fail_once`."""

    url: str = ""
    store_url: str = ""
    store_auth: list[str] = field(default_factory=list)  # what reached the media store
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fail_once: set[str] = field(default_factory=set)
    requests: list[tuple[str, str]] = field(default_factory=list)

    async def media(self, request: web.Request) -> web.Response:
        media_sid = request.match_info["media"]
        self.requests.append((media_sid, request.headers.get("Authorization", "")))
        if request.headers.get("Authorization") != aiohttp.encode_basic_auth(
            ACCOUNT_SID, AUTH_TOKEN
        ):
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if media_sid in self.fail_once:
            self.fail_once.discard(media_sid)
            return web.json_response({"code": 20500, "message": "Internal"}, status=500)
        if media_sid not in self.files:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        raise web.HTTPFound(f"{self.store_url}/store/{media_sid}")

    async def store(self, request: web.Request) -> web.Response:
        self.store_auth.append(request.headers.get("Authorization", ""))
        data, kind = self.files[request.match_info["media"]]
        return web.Response(body=data, content_type=kind)


@pytest.fixture
async def fake_media() -> AsyncIterator[FakeMedia]:
    fake = FakeMedia()
    app = web.Application()
    app.router.add_get("/2010-04-01/Accounts/{sid}/Messages/{message}/Media/{media}", fake.media)
    store = web.Application()
    store.router.add_get("/store/{media}", fake.store)
    server, store_server = TestServer(app), TestServer(store, host="localhost")
    await server.start_server()
    await store_server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    fake.store_url = str(store_server.make_url("")).rstrip("/")
    yield fake
    await server.close()
    await store_server.close()


async def test_twilio_mms_media_are_fetched_with_the_account_credentials_and_retried(
    make_client: MakeClient, settings: Settings, db: Database, fake_media: FakeMedia, token: str
) -> None:
    params = twilio_payload("mms")
    sids = []
    for i in (0, 1):
        url = params[f"MediaUrl{i}"].replace("https://api.twilio.com", fake_media.url)
        params[f"MediaUrl{i}"] = url
        sids.append(url.rsplit("/", 1)[-1])
    photo, pdf = b"\xff\xd8 broken part \xff\xd9", b"%PDF-1.4 invoice"
    fake_media.files = {sids[0]: (photo, "image/jpeg"), sids[1]: (pdf, "application/pdf")}
    fake_media.fail_once = {sids[1]}  # Twilio has a bad moment: the job tries again later
    channels = {"sms": twilio_config(api_base=fake_media.url)}
    client: Client = await make_client(channels=channels, public_url=PUBLIC_URL)
    path = "/webhooks/twilio/sms/sms"
    response = await client.post(
        path,
        data=urlencode(params),
        headers={"Content-Type": FORM, "X-Twilio-Signature": sign(PUBLIC_URL + path, params)},
    )
    assert response.status == 200, await response.text()
    await run_jobs(settings, db, channels=channels, public_url=PUBLIC_URL)

    (item,) = await items(db)
    assert [a.get("stored") for a in item.attachments] == [True, True]
    assert [a["sha256"] for a in item.attachments] == [
        hashlib.sha256(photo).hexdigest(),
        hashlib.sha256(pdf).hexdigest(),
    ]
    assert [r[0] for r in fake_media.requests] == [sids[0], sids[1], sids[1]]
    assert fake_media.store_auth == ["", ""]  # the credentials never leave Twilio's API host
    for attachment, data in zip(item.attachments, (photo, pdf), strict=True):
        response = await client.get(attachment["url"], headers=auth(token))
        assert response.status == 200 and await response.read() == data
        assert response.headers["Content-Type"] == attachment["content_type"]


async def test_twilio_credentials_go_to_twilio_hosts_only() -> None:
    channel = twilio_channel()
    with pytest.raises(DownloadError, match="not on Twilio's API host"):
        await channel.download({"source_url": "https://evil.example.net/Media/ME1"}, None)
    assert await channel.download({"name": "x"}, None) is None


def test_identical_files_are_stored_once_and_only_valid_digests_are_found(
    tmp_path: Path,
) -> None:
    first = store_bytes(tmp_path, b"same bytes", "image/png", "a.png")
    second = store_bytes(tmp_path, b"same bytes", "text/html", "b.html")
    assert first.path == second.path and first.sha256 == second.sha256
    found = find_stored(tmp_path, first.sha256)
    assert found is not None and (found.content_type, found.name) == ("image/png", "a.png")
    assert [p.name for p in first.path.parent.iterdir() if p.name.startswith(".tmp")] == []
    assert find_stored(tmp_path, "../" + first.sha256[3:]) is None
    assert find_stored(tmp_path, "f" * 64) is None
    assert safe_filename('../../etc/pass"wd\r\n') == "pass_wd"
    assert safe_filename("...") == "attachment"


class Flaky(Channel):
    """A provider that is always down, or whose library raises something unforeseen."""

    type: ClassVar[str] = "flaky"
    capabilities: ClassVar[frozenset[str]] = frozenset({"inbound", "attachments"})
    error: ClassVar[Exception] = DownloadError("Flaky answered 503 for the file", retryable=True)

    def describe(self) -> str:
        return "always down"

    async def download(self, attachment: Any, client: Any, max_bytes: int = 0) -> Downloaded:
        raise self.error


@pytest.mark.parametrize(
    ("error", "note"),
    [
        (
            DownloadError("Flaky answered 503 for the file", retryable=True),
            "Flaky answered 503 for the file (gave up after retrying)",
        ),
        (
            KeyError("https://x/bot123:secret/file"),
            "could not fetch the file (KeyError) (gave up after retrying)",
        ),
    ],
)
async def test_an_outage_is_retried_and_noted_on_the_last_try(
    db: Database, settings: Settings, error: Exception, note: str
) -> None:
    Flaky.error = error
    event = InboundEvent(
        channel="flaky",
        channel_type="flaky",
        external_id="f1",
        sender=Sender(phones=("+998901234567",)),
        attachments=(Attachment("a.pdf", "application/pdf", 10, ref="F1"),),
    )
    result = await ingest(db, event, "UZ")
    assert result.item_id is not None
    channels = {"flaky": Flaky(ChannelConfig("flaky", "flaky", {}), settings)}
    first = await fetch_item_attachments(db, channels, settings.data_dir, result.item_id, None)
    assert first.retry is not None and first.live == ()
    last = await fetch_item_attachments(
        db, channels, settings.data_dir, result.item_id, None, final=True
    )
    assert last.retry is None and last.failed == 1
    (update,) = last.live
    assert update.type == "message.updated"
    assert update.data["attachments"][0]["error"] == note
    assert "secret" not in note
    again = await fetch_item_attachments(db, channels, settings.data_dir, result.item_id, None)
    assert again == FetchOutcome()  # noted: never tried again
