"""Reading a real IMAP server (pymap, in its own process) into the hub: cursor, dedupe on every
path, UIDVALIDITY re-sync, bad mail set aside, \\Seen only after commit, failures on /healthz."""

# ruff: noqa: RUF001  # Cyrillic text is what these tests are about

from __future__ import annotations

import asyncio
import imaplib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from hub.channels.email import Email
from hub.channels.email.poller import MailboxPoller
from hub.channels.email.sync import Ingest, record_failure, sync_mailbox
from hub.channels.email.transport import Mailbox, MailboxError
from hub.db import Database
from hub.models import (
    Contact,
    Conversation,
    EmailMessage,
    Lead,
    MailboxState,
    RejectedMail,
    TimelineItem,
)
from hub.settings import ChannelConfig, Settings
from hubcli.bench import free_port
from hubcli.bench_email import pymap_argv
from tests.conftest import FIXTURES, count

MAILS = FIXTURES / "email"
IMAP_USER = "support@example.com"
IMAP_PASSWORD = "imap-test-password"  # the test server's own account


@dataclass
class ImapServer:
    port: int
    process: subprocess.Popen[bytes]

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(IMAP_USER, IMAP_PASSWORD)
        return client

    def deliver(self, *mails: bytes, folder: str = "INBOX") -> None:
        """Mail arriving in the mailbox, as the server's delivery agent would put it there."""
        client = self.client()
        try:
            for mail in mails:
                client.append(folder, mail)
        finally:
            client.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        client = self.client()
        try:
            client.select_folder(folder)
            return {uid: tuple(v) for uid, v in client.get_flags(client.search(["ALL"])).items()}
        finally:
            client.logout()

    def create(self, folder: str) -> None:
        client = self.client()
        try:
            client.create_folder(folder)
        finally:
            client.logout()

    def recreate(self, folder: str) -> None:
        """Delete and create the folder again: the server gives it a new UIDVALIDITY."""
        client = self.client()
        try:
            client.delete_folder(folder)
            client.create_folder(folder)
        finally:
            client.logout()


def logs_in(port: int) -> bool:
    try:
        client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=5)
    except (OSError, imaplib.IMAP4.error):  # imaplib closes its socket on a failed greeting
        return False
    try:
        client.login(IMAP_USER, IMAP_PASSWORD)
        client.logout()
        return True
    except (OSError, imaplib.IMAP4.error):
        client.shutdown()
        return False


def start_imap_server() -> ImapServer:
    port = free_port()
    process = subprocess.Popen(  # our own interpreter's pymap, fixed arguments
        pymap_argv(port, IMAP_USER, IMAP_PASSWORD),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    server = ImapServer(port, process)
    while time.monotonic() < deadline:
        if logs_in(port):  # ready when it logs us in, not merely when the port accepts
            return server
        if process.poll() is not None:
            raise RuntimeError("pymap exited on start")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("pymap did not start within 30 s")


def stop_imap_server(server: ImapServer) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    server = start_imap_server()
    yield server
    stop_imap_server(server)


def email_config(imap_port: int, smtp_port: int = 25, **extra: Any) -> ChannelConfig:
    values: dict[str, Any] = {
        "address": "support@example.com",
        "from_name": "Example Furniture",
        "imap_host": "127.0.0.1",
        "imap_port": imap_port,
        "imap_tls": "none",
        "imap_user": IMAP_USER,
        "imap_password": IMAP_PASSWORD,
        "imap_folder": "INBOX",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_tls": "none",
        "poll_seconds": 1,
        "plus_addressing": True,
    }
    values.update(extra)
    return ChannelConfig("support", "email", values)


def fixture(name: str) -> bytes:
    return (MAILS / name).read_bytes()


@dataclass
class Setup:
    channel: Email
    ingest: Ingest


@pytest.fixture
def setup(settings: Settings, imap_server: ImapServer, db: Database) -> Setup:
    config = email_config(imap_server.port)
    settings = replace(settings, channels={"support": config})
    channel = Email(config, settings)
    channel.bind(db)
    return Setup(channel, Ingest("UZ", settings.leads.callback_within, settings.data_dir))


async def sync_once(db: Database, channel: Email, ingest: Ingest) -> Any:
    mailbox = Mailbox(channel.imap)
    await asyncio.to_thread(mailbox.connect)
    try:
        return await sync_mailbox(db, channel, mailbox, ingest)
    finally:
        await asyncio.to_thread(mailbox.close)


async def texts(db: Database) -> list[str]:
    async with db.read() as session:
        return list(await session.scalars(select(TimelineItem.text).order_by(TimelineItem.id)))


async def test_two_cyrillic_mails_become_two_contacts_and_leads_and_are_flagged_after_commit(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    imap_server.deliver(fixture("cp1251_outlook.eml"), fixture("koi8r_qp.eml"))
    assert all(b"\\Seen" not in f for f in imap_server.flags().values())

    outcome = await sync_once(db, setup.channel, setup.ingest)

    assert (outcome.stored, outcome.duplicates, outcome.rejected) == (2, 0, 0)
    assert await count(db, Contact) == 2
    assert await count(db, Lead, Lead.source == "email") == 2
    stored = await texts(db)
    assert stored[0].startswith("Здравствуйте!\n\nХочу заказать 20 стульев")
    assert stored[1].startswith("Добрый день!")
    assert all(b"\\Seen" in f for f in imap_server.flags().values())
    async with db.read() as session:
        names = set(await session.scalars(select(Contact.name)))
        state = await session.scalar(select(MailboxState))
    assert names == {"Иван Петров", "Ольга Смирнова"}
    assert state is not None and state.last_uid > 0 and state.uidvalidity and state.error is None


async def test_rereading_and_a_uidvalidity_change_store_nothing_twice(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    imap_server.create("Support")
    channel = Email(
        replace(
            setup.channel.config,
            values={**setup.channel.config.values, "imap_folder": "Support"},
        ),
        setup.channel.settings,
    )
    mails = [fixture("cp1251_outlook.eml"), fixture("no_message_id.eml")]
    imap_server.deliver(*mails, folder="Support")
    first = await sync_once(db, channel, setup.ingest)
    assert first.stored == 2
    # The same mail delivered twice (a second copy from a mailing list or a resend): one item.
    imap_server.deliver(mails[0], folder="Support")
    again = await sync_once(db, channel, setup.ingest)
    assert (again.stored, again.duplicates) == (0, 1)

    imap_server.recreate("Support")
    imap_server.deliver(*mails, folder="Support")
    resync = await sync_once(db, channel, setup.ingest)
    assert resync.resynced and (resync.stored, resync.duplicates) == (0, 2)
    assert await count(db, TimelineItem) == 2
    assert await count(db, Lead) == 2


async def test_a_bad_mail_is_kept_raw_and_the_mail_behind_it_still_arrives(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    bad = fixture("no_sender.eml")
    imap_server.deliver(bad, fixture("koi8r_qp.eml"))
    outcome = await sync_once(db, setup.channel, setup.ingest)
    assert (outcome.stored, outcome.rejected) == (1, 1)
    async with db.read() as session:
        rejected = (await session.scalars(select(RejectedMail))).one()
    assert rejected.raw == bad.replace(b"\n", b"\r\n") or rejected.raw == bad
    assert "no sender" in rejected.error
    flags = imap_server.flags()
    assert b"\\Seen" not in flags[min(flags)]  # left unread for a person to look at
    assert b"\\Seen" in flags[max(flags)]
    again = await sync_once(db, setup.channel, setup.ingest)
    assert (again.stored, again.rejected, again.fetched) == (0, 0, 0)  # the cursor moved past


async def test_auto_replies_and_bounces_are_kept_but_open_no_lead_and_own_mail_is_ignored(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    own = (
        b"From: Support <support@example.com>\r\nTo: x@example.org\r\n"
        b"Subject: copy\r\nMessage-ID: <own-1@example.com>\r\n\r\nOur own copy\r\n"
    )
    imap_server.deliver(fixture("auto_reply.eml"), fixture("bounce.eml"), own)
    outcome = await sync_once(db, setup.channel, setup.ingest)
    assert (outcome.stored, outcome.ignored) == (2, 1)
    assert await count(db, Lead) == 0
    async with db.read() as session:
        items = list(await session.scalars(select(TimelineItem).order_by(TimelineItem.id)))
        bounced = await session.scalar(
            select(Contact.id).join(TimelineItem).where(TimelineItem.id == items[1].id)
        )
    assert [i.meta["auto"] for i in items] == ["auto-reply", "bounce"]
    assert bounced is not None
    # The bounce lands on the person the mail could not reach, not on MAILER-DAEMON.
    async with db.read() as session:
        from hub.models import Identity

        owner = await session.scalar(
            select(Identity.contact_id).where(Identity.value == "no.such.user@gmail.com")
        )
    assert owner == bounced


async def test_attachments_and_inline_images_are_stored_and_html_is_sanitised(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    imap_server.deliver(fixture("attachments.eml"), fixture("html_only.eml"))
    await sync_once(db, setup.channel, setup.ingest)
    async with db.read() as session:
        with_files, html_only = list(
            await session.scalars(select(TimelineItem).order_by(TimelineItem.id))
        )
    names = [a["name"] for a in with_files.attachments]
    assert names == ["part-3.png", "смета.pdf"]
    assert all(
        a.get("stored") and a["url"].startswith("/api/attachments/") for a in with_files.attachments
    )
    image_url = with_files.attachments[0]["url"]
    assert f'src="{image_url}"' in with_files.meta["html"]
    blob = Path(setup.ingest.data_dir, "attachments")
    assert sum(1 for p in blob.rglob("*") if p.is_file() and not p.suffix) == 2
    shown = html_only.meta["html"]
    assert "<script" not in shown and "onclick" not in shown and "javascript:" not in shown
    assert "tracker.example.net" not in shown  # no remote image tells the sender we read it
    assert "<b>3 sofas</b>" in shown
    assert html_only.text.startswith("Hello, I'd like a quote for 3 sofas.")
    assert "Thank you for your interest" not in html_only.text


async def test_threading_by_references_address_token_and_subject(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    imap_server.deliver(fixture("iso8859_5_base64.eml"), fixture("koi8r_qp.eml"))
    await sync_once(db, setup.channel, setup.ingest)
    async with db.read() as session:
        threads = {m.party: m.thread_key for m in await session.scalars(select(EmailMessage))}
    # Dilshod answers to support+<token>@ (our Reply-To); Olga's Outlook only keeps the subject.
    uz = fixture("reply_uz.eml").replace(
        b"t0ken1234abcd5678", threads["dilshod@example.uz"].encode()
    )
    imap_server.deliver(uz, fixture("outlook_reply_ru.eml"))
    await sync_once(db, setup.channel, setup.ingest)
    assert await count(db, Conversation) == 2
    async with db.read() as session:
        items = list(await session.scalars(select(TimelineItem).order_by(TimelineItem.id)))
    assert [i.meta["thread"] for i in items] == ["new", "new", "address", "subject"]
    assert items[2].conversation_id == items[0].conversation_id
    assert items[3].conversation_id == items[1].conversation_id
    assert items[3].text.endswith("Менеджер по закупкам")
    assert "Исходное сообщение" in items[3].meta["quoted"]


async def test_a_new_subject_from_the_same_person_starts_a_new_conversation(
    db: Database, imap_server: ImapServer, setup: Setup
) -> None:
    other = fixture("koi8r_qp.eml").replace(b"Message-ID: <1732518062", b"Message-ID: <99")
    other = other.replace(b"Subject: =?koi8-r?B?", b"Subject: Invoice =?koi8-r?B?")
    imap_server.deliver(fixture("koi8r_qp.eml"), other)
    await sync_once(db, setup.channel, setup.ingest)
    assert await count(db, Conversation) == 2
    assert await count(db, Lead) == 1  # one person, one open lead


async def test_bad_credentials_and_a_dead_server_are_shown_and_retried(
    settings: Settings,
    db: Database,
    imap_server: ImapServer,
    setup: Setup,
    redis_prefix: str,
    make_client: Any,
) -> None:
    config = email_config(imap_server.port, imap_password="wrong")
    channel = Email(config, replace(settings, channels={"support": config}))
    mailbox = Mailbox(channel.imap)
    with pytest.raises(MailboxError, match="login refused"):
        await asyncio.to_thread(mailbox.connect)
    dead = Email(email_config(free_port()), settings)
    with pytest.raises(MailboxError, match="connection refused"):
        await asyncio.to_thread(Mailbox(dead.imap).connect)

    from redis.asyncio import Redis

    from tests.conftest import TEST_REDIS_URL

    redis = Redis.from_url(TEST_REDIS_URL)
    poller = MailboxPoller(db, redis, redis_prefix, channel, setup.ingest)
    task = asyncio.create_task(poller.run())
    try:
        for _ in range(100):
            async with db.read() as session:
                state = await session.scalar(select(MailboxState))
            if state is not None and state.error:
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.error is not None
        assert state.error.startswith("login refused") and state.failures >= 1
        assert IMAP_PASSWORD not in state.error and "wrong" not in state.error
    finally:
        poller.stop()
        await asyncio.wait_for(task, 10)
        await redis.aclose()
    assert await record_failure(db, channel, "timed out") == state.failures + 1
    client = await make_client(channels={"support": config})
    health = await client.get("/healthz")
    body = await health.json()
    assert health.status == 200  # a failing mailbox is shown, it does not take the hub down
    assert body["channels"]["support"]["status"] == "failing"
    assert body["channels"]["support"]["error"] == "timed out"
    assert body["channels"]["support"]["failing_since"] is not None


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
async def test_a_tls_failure_is_named_as_such(
    settings: Settings, imap_server: ImapServer, tls: str
) -> None:
    # The test server speaks plain IMAP and has no certificate: both TLS modes must fail
    # with the reason, and close what they opened.
    channel = Email(email_config(imap_server.port, imap_tls=tls), settings)
    with pytest.raises(MailboxError, match=r"^TLS error: "):
        await asyncio.to_thread(Mailbox(channel.imap).connect)


async def test_the_poller_takes_mail_as_it_arrives_and_one_worker_holds_the_mailbox(
    db: Database, imap_server: ImapServer, setup: Setup, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    from tests.conftest import TEST_REDIS_URL

    redis = Redis.from_url(TEST_REDIS_URL)
    first = MailboxPoller(db, redis, redis_prefix, setup.channel, setup.ingest)
    second = MailboxPoller(db, redis, redis_prefix, setup.channel, setup.ingest)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        imap_server.deliver(fixture("cp1251_outlook.eml"))
        for _ in range(200):
            if await count(db, TimelineItem) == 1:
                break
            await asyncio.sleep(0.05)
        imap_server.deliver(fixture("koi8r_qp.eml"))
        for _ in range(200):
            if await count(db, TimelineItem) == 2:
                break
            await asyncio.sleep(0.05)
        assert await count(db, TimelineItem) == 2
        assert (first.passes > 0) != (second.passes > 0)  # only the lock holder read it
    finally:
        first.stop()
        second.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        await redis.aclose()
    assert await count(db, RejectedMail) == 0


async def test_a_mailbox_is_read_in_chunks_each_flagged_after_its_commit(
    db: Database, imap_server: ImapServer, setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.channels.email.sync as sync_module

    monkeypatch.setattr(sync_module, "FETCH_CHUNK", 2)  # five mails: three chunks
    mails = [
        fixture("cp1251_outlook.eml"),
        fixture("koi8r_qp.eml"),
        fixture("no_sender.eml"),
        fixture("iso8859_5_base64.eml"),
        fixture("iso8859_2_qp.eml"),
    ]
    imap_server.deliver(*mails)
    outcome = await sync_once(db, setup.channel, setup.ingest)
    assert (outcome.fetched, outcome.stored, outcome.rejected) == (5, 4, 1)
    flags = imap_server.flags()
    unseen = [uid for uid, f in flags.items() if b"\\Seen" not in f]
    assert len(unseen) == 1  # the mail set aside
    async with db.read() as session:
        state = await session.scalar(select(MailboxState))
    assert state is not None and state.last_uid == max(flags)
    assert [t.split("\n")[0] for t in await texts(db)] == [
        "Здравствуйте!",
        "Добрый день!",
        "Здравствуйте!",
        "Dobrý den,",
    ]
