"""The e-mail channel's side of the Channel protocol: a polling channel (fetch, not the webhook
trio), configured through the settings loader, and its stored attachments handed back."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import pytest

from hub.channels.base import DownloadError, InboundRequest
from hub.channels.email import Email
from hub.channels.registry import CHANNEL_TYPES, build_channels
from hub.settings import ConfigError, Settings, load_settings
from tests.channels.test_email_imap import (  # noqa: F401  # fixture
    ImapServer,
    email_config,
    fixture,
    imap_server,
)

CONFIG = """
[channels.support]
type = "email"
address = "support@example.com"
imap_host = "imap.example.com"
imap_user = "support@example.com"
imap_password = "env:IMAP_PASS"
smtp_host = "smtp.example.com"
"""


def test_a_polling_channel_in_the_registry() -> None:
    assert CHANNEL_TYPES["email"] is Email
    channel = Email(email_config(993), Settings())
    assert channel.capabilities == {"inbound", "outbound", "attachments", "send_files", "polling"}
    assert channel.address_kind == "email"
    assert "support@example.com" in channel.describe()
    assert inspect.iscoroutinefunction(channel.fetch)
    assert inspect.iscoroutinefunction(channel.send)
    request = InboundRequest(method="POST", path="/webhooks/email/support", headers={}, body=b"")
    with pytest.raises(TypeError):
        channel.verify(request)


def test_settings_give_the_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(CONFIG)
    settings = load_settings(path, {"IMAP_PASS": "secret"})
    channel = build_channels(settings)["support"]
    assert isinstance(channel, Email)
    assert (channel.imap.port, channel.imap.tls, channel.imap.folder) == (993, "ssl", "INBOX")
    assert (channel.smtp.port, channel.smtp.tls) == (587, "starttls")
    assert channel.poll_seconds == 30 and not channel.plus_addressing
    assert channel.sent_folder is None


def test_settings_name_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(CONFIG.replace('smtp_host = "smtp.example.com"', 'imap_tls = "tls"'))
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.problems == [
        "channels.support.imap_password: environment variable IMAP_PASS is not set",
        "channels.support.imap_tls: must be one of ssl, starttls, none, got 'tls'",
        "channels.support: missing required key 'smtp_host'",
    ]


async def test_fetch_returns_events_after_the_cursor(
    settings: Settings,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    config = email_config(imap_server.port)
    channel = Email(config, replace(settings, channels={"support": config}))
    imap_server.deliver(fixture("cp1251_outlook.eml"), fixture("attachments.eml"))
    events, cursor = await channel.fetch({})
    assert [e.sender.emails for e in events] == [("ivan.petrov@mail.ru",), ("aziz@company.uz",)]
    assert all(e.channel_type == "email" and e.source == "email" for e in events)
    again, same = await channel.fetch(cursor)
    assert again == [] and same == cursor
    # a cursor from another UIDVALIDITY reads the folder again
    events_again, _ = await channel.fetch({**cursor, "uidvalidity": 1})
    assert [e.external_id for e in events_again] == [e.external_id for e in events]

    pdf = events[1].attachments[1]
    assert pdf.ref is not None
    got = await channel.download({"ref": pdf.ref, "size": pdf.size}, None)
    assert got is not None and got.data.startswith(b"%PDF")
    with pytest.raises(DownloadError, match="missing"):
        await channel.download({"ref": "blob:" + "0" * 64}, None)
    with pytest.raises(DownloadError, match="too large"):
        await channel.download({"size": 30_000_000}, None)


async def test_the_poll_mailbox_job_reads_the_mailbox_once(
    settings: Settings,
    imap_server: ImapServer,  # noqa: F811
) -> None:
    from hub.runtime import Runtime
    from workers.mail import poll_mailbox

    config = email_config(imap_server.port)
    runtime = Runtime.open(replace(settings, channels={"support": config}))
    try:
        imap_server.deliver(fixture("koi8r_qp.eml"), fixture("no_sender.eml"))
        ctx = {"runtime": runtime}
        assert await poll_mailbox(ctx, "support") == "stored 1, duplicates 0, rejected 1"
        assert await poll_mailbox(ctx, "support") == "stored 0, duplicates 0, rejected 0"
        assert await poll_mailbox(ctx, "nope") == "no e-mail channel 'nope'"
    finally:
        await runtime.close()
