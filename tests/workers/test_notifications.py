"""Reminder notifications through real carriers: the real aiogram Bot against the fake Bot API,
the official Twilio client against the fake Twilio; escalation to the supervisor, once; the
outbox sent again after a sender died; and the auto-acknowledgement of a new lead."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.auth.users import create_user
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.leads.reminders import enqueue_dues
from hub.models import Notification, NotificationPrefs, Reminder, TimelineItem, User, utcnow
from hub.notify import outbox
from hub.runtime import Runtime
from hub.settings import ChannelConfig, LeadsConfig, Settings
from tests.channels.fake_bot_api import FakeBotAPI, fake_bot_api
from tests.channels.test_email_imap import email_config, free_port
from tests.channels.test_email_send import SmtpServer, smtp_server  # noqa: F401  (fixture)
from tests.channels.test_telegram import SECRET, config, payload
from tests.channels.test_twilio import twilio_config
from tests.channels.test_twilio_send import FakeTwilio, fake_twilio  # noqa: F401  (fixture)
from tests.conftest import count
from tests.conftest import sms_event as sms
from tests.workers.test_deliver import run_worker
from webhooks.context import RUNTIME
from workers.reminders import RUNTIME as JOB_RUNTIME
from workers.reminders import sweep_reminders

AT_ONCE = LeadsConfig(callback_within=timedelta(0), escalate_after=timedelta(minutes=30))


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with fake_bot_api() as server:
        yield server


async def staff(db: Database, email: str, role: str, **prefs: Any) -> int:
    async with db.write() as session:
        user = await create_user(session, email, "pw-123456789", role, email.split("@")[0])
        if prefs:
            session.add(NotificationPrefs(user_id=user.id, **prefs))
        return user.id


async def notifications(db: Database) -> list[Notification]:
    async with db.read() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.id)))


async def test_the_supervisor_gets_the_escalation_on_telegram_once(
    settings: Settings, db: Database, api: FakeBotAPI
) -> None:
    boss = await staff(db, "boss@example.com", "manager", via="auto", telegram_chat_id="9001")
    operator = await staff(
        db, "op@example.com", "operator", via="telegram", telegram_chat_id="9002"
    )
    async with db.write() as session:
        await session.execute(update(User).where(User.id == operator).values(manager_id=boss))
    runtime = Runtime.open(
        replace(settings, leads=AT_ONCE, channels={"tg": config(api_base=api.base)})
    )
    try:
        result = await ingest(runtime.db, sms("SM1", "+998901234567"), "UZ", timedelta(0))
        await enqueue_dues(runtime, result.reminders)
        await run_worker(runtime)
        (due,) = api.sent()
        assert due.params["chat_id"] == "9002" and "Call back" in due.params["text"]
        async with db.write() as session:
            await session.execute(update(Reminder).values(due_at=utcnow() - timedelta(minutes=31)))
        ctx = {JOB_RUNTIME: runtime, "http": None}
        assert await sweep_reminders(ctx) == "queued 0, escalated 1, resent 0"
        assert await sweep_reminders(ctx) == "queued 0, escalated 0, resent 0"
    finally:
        await runtime.close()
    escalation = api.sent()[1]
    assert escalation.params["chat_id"] == "9001"
    assert "Not called back" in escalation.params["text"] and "op" in escalation.params["text"]
    assert len(api.sent()) == 2
    assert [(n.kind, n.user_id, n.status) for n in await notifications(db)] == [
        ("due", operator, "sent"),
        ("escalation", boss, "sent"),
    ]


async def test_sms_preference_goes_through_twilio_and_unlinked_telegram_is_recorded(
    settings: Settings,
    db: Database,
    fake_twilio: FakeTwilio,  # noqa: F811
) -> None:
    by_sms = await staff(db, "sms@example.com", "operator", via="sms", phone="+998935556677")
    runtime = Runtime.open(
        replace(
            settings,
            leads=AT_ONCE,
            channels={
                "sms": twilio_config(api_base=fake_twilio.url),
                "tg": config(api_base="http://127.0.0.1:9"),  # never called: nobody linked
            },
        )
    )
    try:
        result = await ingest(runtime.db, sms("SM1", "+998901234567"), "UZ", timedelta(0))
        await enqueue_dues(runtime, result.reminders)
        await run_worker(runtime)
        # a manual reminder for a user who chose Telegram but never linked it
        unlinked = await staff(db, "tg@example.com", "operator", via="telegram")
        async with db.write() as session:
            reminder = await session.scalar(select(Reminder))
            assert reminder is not None
            session.add(
                Reminder(
                    lead_id=reminder.lead_id,
                    contact_id=reminder.contact_id,
                    assignee_id=unlinked,
                    due_at=utcnow(),
                    status="pending",
                )
            )
        ctx = {JOB_RUNTIME: runtime, "http": None}
        await sweep_reminders(ctx)
        await run_worker(runtime)
    finally:
        await runtime.close()
    (post,) = fake_twilio.posts
    assert post["To"] == "+998935556677" and "Call back" in post["Body"]
    first, second = await notifications(db)
    assert (first.user_id, first.via, first.status) == (by_sms, "sms", "sent")
    assert (second.user_id, second.status, second.error) == (
        unlinked,
        "failed",
        "Telegram is not linked",
    )


async def test_a_notification_whose_sender_died_is_sent_by_the_sweep(
    settings: Settings, db: Database, api: FakeBotAPI
) -> None:
    await staff(db, "op@example.com", "operator", via="telegram", telegram_chat_id="9002")
    runtime = Runtime.open(replace(settings, channels={"tg": config(api_base=api.base)}))
    try:
        result = await ingest(runtime.db, sms("SM1", "+998901234567"), "UZ", timedelta(0))
        (due,) = result.reminders
        # The reminder fired and its notification was written, then the worker died before
        # sending it: the same transaction as the firing, nothing sent.
        from hub.leads.reminders import fire

        outcome = await fire(runtime.db, due.reminder_id, due.due_at, runtime.settings)
        assert outcome.fired and len(outcome.notifications) == 1
        assert await outbox.claim(runtime.db, outcome.notifications[0])  # claimed, then death
        assert api.sent() == []
        ctx = {JOB_RUNTIME: runtime, "http": None}
        assert await sweep_reminders(ctx) == "queued 0, escalated 0, resent 0"  # still fresh
        async with db.write() as session:
            await session.execute(
                update(Notification).values(claimed_at=utcnow() - timedelta(minutes=2))
            )
        assert await sweep_reminders(ctx) == "queued 0, escalated 0, resent 1"
        await run_worker(runtime)
    finally:
        await runtime.close()
    (sent,) = api.sent()
    assert sent.params["chat_id"] == "9002"
    (row,) = await notifications(db)
    assert row.status == "sent" and row.attempts == 2


async def test_a_new_lead_is_acknowledged_once_on_its_own_channel(
    make_client: Any, db: Database, api: FakeBotAPI
) -> None:
    channel = config(api_base=api.base)
    channel = ChannelConfig(
        channel.name, channel.type, dict(channel.values) | {"acknowledge": "Got it, we call soon"}
    )
    client = await make_client(channels={"tg": channel})
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    for name in ("text", "text", "photo_caption"):  # redelivery, then a second message
        response = await client.post(
            "/webhooks/telegram/tg", data=json.dumps(payload(name)), headers=headers
        )
        assert response.status == 200
    await run_worker(client.server.app[RUNTIME])
    (ack,) = api.sent()
    assert ack.params["text"] == "Got it, we call soon"
    assert ack.params["chat_id"] == str(payload("text")["message"]["chat"]["id"])
    assert await count(db, TimelineItem, TimelineItem.direction == "out") == 1
    async with db.read() as session:
        item = await session.scalar(select(TimelineItem).where(TimelineItem.direction == "out"))
    assert item is not None and item.status == "sent" and item.meta == {"auto": "acknowledge"}


async def test_a_form_shows_its_acknowledgement(make_client: Any, settings: Settings) -> None:
    form = replace(settings.forms["callback"], acknowledge="We call within 15 minutes")
    client = await make_client(forms={"callback": form})
    posted = await client.post("/forms/callback", json={"phone": "+998901234567"})
    assert (await posted.json())["message"] == "We call within 15 minutes"
    page = await client.get("/forms/callback/thanks")
    assert "We call within 15 minutes" in await page.text()
    script = await client.get("/forms/callback/embed.js")
    assert '"success": "We call within 15 minutes"' in await script.text()


async def test_email_preference_sends_a_mail_with_the_subject(
    settings: Settings,
    db: Database,
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    await staff(db, "olga@example.com", "operator", via="email")
    closed_imap = free_port()  # the mailbox is not read in this test
    runtime = Runtime.open(
        replace(
            settings,
            leads=AT_ONCE,
            channels={"support": email_config(closed_imap, smtp_server.port)},
        )
    )
    try:
        result = await ingest(runtime.db, sms("SM1", "+998901234567"), "UZ", timedelta(0))
        await enqueue_dues(runtime, result.reminders)
        await run_worker(runtime)
    finally:
        await runtime.close()
    (mail,) = smtp_server.recorder.received
    assert mail["To"] == "olga@example.com"
    assert mail["Subject"].startswith("Call back")
    assert "+998901234567" in mail.get_body(("plain",)).get_content()
    (row,) = await notifications(db)
    assert (row.via, row.status, row.channel) == ("email", "sent", "support")
