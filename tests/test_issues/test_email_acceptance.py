"""Issue 6's acceptance, end to end: a real IMAP server (pymap) and SMTP server (aiosmtpd), the
real worker polling the mailbox, the operator API replying, the customer's replies threading."""

# ruff: noqa: RUF001  # Cyrillic text is what these tests are about

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from hub.auth.users import create_user
from hub.db import Database
from hub.models import Contact, Conversation, Lead, TimelineItem
from hub.runtime import Runtime
from hub.settings import Settings
from tests.channels.test_email_imap import (  # noqa: F401  # fixtures
    ImapServer,
    email_config,
    fixture,
    imap_server,
)
from tests.channels.test_email_send import SmtpServer, smtp_server  # noqa: F401  # fixture
from tests.conftest import PASSWORD, auth, count
from workers.settings import make_worker, stop_worker

FOLDER = "Support"
ACKNOWLEDGE = "Спасибо! Мы ответим в течение часа."


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def items_are(db: Database, expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await count(db, TimelineItem) == expected

    return check


class Worker:
    """The real arq worker (which starts the mailbox pollers), restartable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self.worker: Any = None
        self.task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        self.runtime = Runtime.open(self.settings)
        self.worker = make_worker(self.runtime, poll_delay=0.05)
        self.task = asyncio.create_task(self.worker.async_run())

    async def stop(self) -> None:
        if self.worker is not None:
            await stop_worker(self.worker)
        if self.runtime is not None:
            await self.runtime.close()
        self.worker = self.runtime = self.task = None


@pytest.fixture
async def worker(
    settings: Settings,
    imap_server: ImapServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> AsyncIterator[Worker]:
    imap_server.create(FOLDER)
    config = email_config(
        imap_server.port, smtp_server.port, imap_folder=FOLDER, acknowledge=ACKNOWLEDGE
    )
    running = Worker(replace(settings, channels={"support": config}))
    yield running
    await running.stop()


async def test_mail_in_reply_out_and_the_customers_answers_thread(
    make_client: Any,
    db: Database,
    settings: Settings,
    imap_server: ImapServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
    worker: Worker,
) -> None:
    client = await make_client(channels=worker.settings.channels)
    await worker.start()

    # A windows-1251 mail and a KOI8-R mail from two people: two contacts, two leads.
    imap_server.deliver(fixture("cp1251_outlook.eml"), fixture("koi8r_qp.eml"), folder=FOLDER)
    await until(items_are(db, 4))  # two mails and two acknowledgements
    assert await count(db, Contact) == 2
    assert await count(db, Lead, Lead.source == "email", Lead.status == "open") == 2
    assert all(b"\\Seen" in f for f in imap_server.flags(FOLDER).values())

    async with db.write() as session:
        await create_user(session, "op@example.com", PASSWORD, "operator")
    login = await client.post(
        "/api/auth/login", json={"email": "op@example.com", "password": PASSWORD}
    )
    headers = auth((await login.json())["token"])
    async with db.read() as session:
        ivan, olga = list(await session.scalars(select(Conversation).order_by(Conversation.id)))
    timeline = await client.get(f"/api/conversations/{ivan.id}/messages", headers=headers)
    assert timeline.status == 200
    first, ack = (await timeline.json())["items"]
    assert (ack["direction"], ack["text"]) == ("out", ACKNOWLEDGE)
    assert first["channel_type"] == "email" and first["direction"] == "in"
    assert first["text"].startswith("Здравствуйте!\n\nХочу заказать 20 стульев для кафе")
    assert first["meta"]["subject"] == "Заказ стульев"

    # The operator answers from the inbox: an SMTP message, threaded.
    sent = await client.post(
        f"/api/conversations/{ivan.id}/messages",
        json={"text": "Иван, замерщик приедет в четверг."},
        headers=headers,
    )
    assert sent.status == 202, await sent.text()
    # Each new lead got the channel's acknowledgement, in its own thread.
    await until(lambda: _received(smtp_server, 3))
    *acks, mail = smtp_server.recorder.received
    assert sorted(str(a["To"]) for a in acks) == ["ivan.petrov@mail.ru", "olga.smirnova@yandex.ru"]
    assert all(a.get_body(("plain",)).get_content().strip() == ACKNOWLEDGE for a in acks)
    assert {str(a["Subject"]) for a in acks} == {"Re: Заказ стульев", "Re: Доставка дивана"}
    assert mail["To"] == "ivan.petrov@mail.ru"
    assert mail["Subject"] == "Re: Заказ стульев"
    assert mail["In-Reply-To"] == "<000001db3f1a$6c2b4e10$448dea30$@mail.ru>"
    our_id = str(mail["Message-ID"])
    await until(lambda: _replies_are(db, "sent"))

    # Ivan answers with only In-Reply-To (his client dropped References; another subject).
    by_header = fixture("gmail_reply_ru.eml").replace(b"<PLACEHOLDER@hub.invalid>", our_id.encode())
    by_header = re.sub(rb"References:[^\r\n]*\r\n", b"", by_header)
    by_header = re.sub(
        rb"Subject:[^\r\n]*\r\n", b"Subject: =?UTF-8?B?0JfQsNC80LXRgA==?=\r\n", by_header
    )
    # Olga answers with only a "Ответ:" subject (Outlook, no threading headers).
    imap_server.deliver(by_header, fixture("outlook_reply_ru.eml"), folder=FOLDER)
    await until(items_are(db, 7))
    async with db.read() as session:
        answers = list(
            await session.scalars(
                select(TimelineItem)
                .where(TimelineItem.direction == "in")
                .order_by(TimelineItem.id)
                .offset(2)
            )
        )
    ivan_answer, olga_answer = answers
    assert ivan_answer.conversation_id == ivan.id and ivan_answer.meta["thread"] == "references"
    assert ivan_answer.text == "Да, в четверг после обеда удобно. Адрес: ул. Навои, 12."
    assert olga_answer.conversation_id == olga.id and olga_answer.meta["thread"] == "subject"
    assert "Исходное сообщение" not in olga_answer.text
    assert await count(db, Conversation) == 2 and await count(db, Lead) == 2

    # An out-of-office from someone new is on the timeline but opens no lead.
    auto = fixture("auto_reply.eml").replace(b"ivan.petrov@mail.ru", b"boss@newco.uz")
    imap_server.deliver(auto, folder=FOLDER)
    await until(items_are(db, 8))
    assert await count(db, Lead) == 2
    await asyncio.sleep(0.5)  # a worker that wanted to acknowledge it has had its chance
    assert len(smtp_server.recorder.received) == 3  # no acknowledgement to a robot

    # A restarted worker, and then a renumbered folder (new UIDVALIDITY) holding every mail
    # again, store nothing twice.
    await worker.stop()
    await worker.start()
    imap_server.recreate(FOLDER)
    imap_server.deliver(
        fixture("cp1251_outlook.eml"),
        fixture("koi8r_qp.eml"),
        by_header,
        fixture("outlook_reply_ru.eml"),
        auto,
        folder=FOLDER,
    )
    await until(lambda: _all_seen(imap_server, 5))
    assert await count(db, TimelineItem) == 8
    assert await count(db, Contact) == 3 and await count(db, Lead) == 2

    health = await client.get("/healthz")
    body = await health.json()
    assert health.status == 200 and body["channels"]["support"]["status"] == "ok"


async def _received(server: SmtpServer, expected: int) -> bool:
    return len(server.recorder.received) >= expected


async def _replies_are(db: Database, status: str) -> bool:
    async with db.read() as session:
        statuses = set(
            await session.scalars(
                select(TimelineItem.status).where(TimelineItem.direction == "out")
            )
        )
    return statuses == {status}


async def _all_seen(server: ImapServer, expected: int) -> bool:
    flags = await asyncio.to_thread(server.flags, FOLDER)
    return len(flags) == expected and all(b"\\Seen" in f for f in flags.values())
