"""Replies out over SMTP to a real server (aiosmtpd): threading headers, plain + HTML, 4xx
retried, 5xx failed with the server's reply, a copy in the IMAP Sent folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from hub.channels.base import OutboundMessage
from hub.channels.email import Email
from hub.channels.email.threads import record_message
from hub.db import Database
from hub.settings import Settings
from tests.channels.test_email_imap import (  # noqa: F401  # fixtures
    ImapServer,
    email_config,
    free_port,
    imap_server,
)


@dataclass
class SmtpRecorder:
    """The server side: keeps what it accepted, answers with `replies` first when given."""

    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    # aiosmtpd's hook name
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        raw = envelope.original_content or b""
        mail = message_from_bytes(raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.received.append(mail)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: queued"


@dataclass
class SmtpServer:
    port: int
    recorder: SmtpRecorder


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer(port, recorder)
    controller.stop()


def channel_for(
    settings: Settings, db: Database, smtp_port: int, imap_port: int, **extra: Any
) -> Email:
    config = email_config(imap_port, smtp_port, **extra)
    channel = Email(config, replace(settings, channels={"support": config}))
    channel.bind(db)
    return channel


async def test_a_reply_carries_the_thread_headers_and_both_bodies(
    settings: Settings,
    db: Database,
    smtp_server: SmtpServer,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    channel = channel_for(settings, db, smtp_server.port, imap_server.port)
    thread = "0123456789abcdef"
    for message_id in ("<first@gmail.com>", "<second@gmail.com>"):
        await db.run_write(
            lambda conn, mid=message_id: record_message(
                conn,
                channel="support",
                message_id=mid,
                thread_key=thread,
                direction="in",
                party="kate.brown@gmail.com",
                subject="Quote for sofas",
                item_id=None,
            )
        )
    result = await channel.send(
        OutboundMessage(item_id=7, channel="support", to=thread, text="Hello Kate,\n\nSee you <b>"),
        None,
    )
    assert result.status == "sent" and result.external_id == f"<{thread}.7.support@example.com>"
    (mail,) = smtp_server.recorder.received
    assert mail["To"] == "kate.brown@gmail.com"
    assert mail["From"] == "Example Furniture <support@example.com>"
    assert mail["Message-ID"] == result.external_id
    assert mail["In-Reply-To"] == "<second@gmail.com>"
    assert mail["References"] == "<first@gmail.com> <second@gmail.com>"
    assert mail["Reply-To"] == f"support+{thread}@example.com"
    assert mail["Subject"] == "Message from Example Furniture"  # no subject kept: no item meta
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and plain.get_content().startswith("Hello Kate,")
    assert html is not None and "&lt;b&gt;" in html.get_content()
    # the sent Message-ID joins the thread, so the customer's answer to it finds it
    async with db.engine.connect() as conn:
        from hub.channels.email.threads import thread_messages

        rows = await conn.run_sync(thread_messages, "support", thread)
    assert [r.message_id for r in rows][-1] == result.external_id


async def test_a_4xx_is_retried_and_a_5xx_fails_with_the_servers_reply(
    settings: Settings,
    db: Database,
    smtp_server: SmtpServer,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    channel = channel_for(settings, db, smtp_server.port, imap_server.port)
    message = OutboundMessage(item_id=8, channel="support", to="kate.brown@gmail.com", text="Hi")
    smtp_server.recorder.replies = ["451 4.3.0 Mailbox temporarily unavailable"]
    deferred = await channel.send(message, None)
    assert deferred.status == "failed" and deferred.retryable
    assert "451 4.3.0 Mailbox temporarily unavailable" in (deferred.error or "")
    retried = await channel.send(message, None)
    assert retried.status == "sent"

    smtp_server.recorder.replies = ["550 5.7.1 Message rejected as spam"]
    refused = await channel.send(replace(message, item_id=9), None)
    assert refused.status == "failed" and not refused.retryable
    assert (
        refused.error == "the mail server refused the message: 550 5.7.1 Message rejected as spam"
    )


async def test_unreachable_server_is_retryable_and_bad_addresses_fail_at_once(
    settings: Settings,
    db: Database,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    channel = channel_for(settings, db, free_port(), imap_server.port)
    message = OutboundMessage(item_id=1, channel="support", to="kate.brown@gmail.com", text="Hi")
    down = await channel.send(message, None)
    assert down.status == "failed" and down.retryable and "unreachable" in (down.error or "")
    bad = await channel.send(replace(message, to="not-an-address"), None)
    assert bad.status == "failed" and not bad.retryable
    empty = await channel.send(replace(message, text="  "), None)
    assert empty.error == "nothing to send: the reply is empty"
    unknown_thread = await channel.send(replace(message, to="fedcba9876543210"), None)
    assert unknown_thread.error == "no address in this mail thread to reply to"


async def test_sent_mail_is_copied_to_the_sent_folder(
    settings: Settings,
    db: Database,
    smtp_server: SmtpServer,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    imap_server.create("Sent")
    channel = channel_for(settings, db, smtp_server.port, imap_server.port, imap_sent_folder="Sent")
    message = OutboundMessage(item_id=3, channel="support", to="kate.brown@gmail.com", text="Hi")
    assert (await channel.send(message, None)).status == "sent"
    flags = imap_server.flags("Sent")
    assert len(flags) == 1 and all(b"\\Seen" in f for f in flags.values())


def test_check_config_names_what_to_fix() -> None:
    problems = Email.check_config(
        "support",
        {"address": "support+x@example", "imap_port": 0, "poll_seconds": 0, "smtp_user": "u"},
    )
    assert problems == [
        "address: 'support+x@example' is not an e-mail address like support@example.com",
        "address: give the plain address; plus_addressing adds the +tag",
        "imap_port: 0 is not a TCP port",
        "poll_seconds: must be at least 1, got 0",
        "smtp_password: required with smtp_user",
    ]


async def test_a_reply_carries_stored_files_as_attachments(
    settings: Settings,
    db: Database,
    smtp_server: SmtpServer,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    from hub.channels.base import Attachment
    from hub.inbox.attachments import store_bytes

    channel = channel_for(settings, db, smtp_server.port, imap_server.port)
    blob = store_bytes(channel.settings.data_dir, b"%PDF-1.4 price list", "application/pdf", "p")
    files = (
        Attachment(
            "prices.pdf", "application/pdf", blob.size, url=f"/api/attachments/{blob.sha256}"
        ),
        Attachment("gone.pdf", "application/pdf", 1, url="/api/attachments/" + "0" * 64),
    )
    message = OutboundMessage(
        item_id=4, channel="support", to="kate.brown@gmail.com", text="Prices", attachments=files
    )
    assert (await channel.send(message, None)).status == "sent"
    (mail,) = smtp_server.recorder.received
    (attached,) = list(mail.iter_attachments())  # a file no longer kept is left out
    assert attached.get_filename() == "prices.pdf"
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content() == b"%PDF-1.4 price list"
