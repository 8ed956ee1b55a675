"""The e-mail channel class: configuration, mail -> event, and replies out over SMTP with the
threading headers that keep the customer's client (and us) in one conversation."""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar

import structlog
from sqlalchemy import Connection, select

from hub.channels.base import (
    MAX_DOWNLOAD_BYTES,
    Attachment,
    Channel,
    Downloaded,
    DownloadError,
    InboundEvent,
    OutboundMessage,
    Sender,
    SendResult,
)
from hub.channels.email.parsing import (
    MailError,
    ParsedMail,
    dedupe_key,
    parse_mail,
    sanitise_html,
)
from hub.channels.email.threads import (
    TOKEN_RE,
    new_thread_key,
    own_message_id,
    plus_address,
    record_message,
    subject_key,
    thread_messages,
)
from hub.channels.email.transport import (
    ImapSettings,
    Mailbox,
    MailboxError,
    SmtpFailure,
    SmtpSettings,
    submit,
)
from hub.db import Database
from hub.inbox.attachments import API_PATH, find_stored, store_bytes
from hub.models import ITEMS, utcnow
from hub.settings import ChannelConfig, Key, Settings

log = structlog.get_logger(__name__)

CHANNEL_TYPE = "email"
TLS_MODES = ("ssl", "starttls", "none")
MAX_REFERENCES = 20  # the References chain keeps the first and the latest ids beyond this
ADDRESS_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
REF_PREFIX = "blob:"  # an attachment's ref: the sha256 of its bytes, kept at fetch time


@dataclass(frozen=True)
class StoredPart:
    name: str
    content_type: str
    size: int
    sha256: str
    inline: bool
    content_id: str | None


class Email(Channel):
    type: ClassVar[str] = CHANNEL_TYPE
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"inbound", "outbound", "attachments", "send_files", "polling"}
    )
    address_kind: ClassVar[str | None] = "email"
    config_keys: ClassVar[Mapping[str, Key]] = {
        "address": Key(str, required=True),
        "from_name": Key(str),
        "imap_host": Key(str, required=True),
        "imap_port": Key(int, default=993),
        "imap_tls": Key(str, default="ssl", choices=TLS_MODES),
        "imap_user": Key(str, required=True),
        "imap_password": Key(str, required=True, secret=True),
        "imap_folder": Key(str, default="INBOX"),
        "imap_sent_folder": Key(str),
        "smtp_host": Key(str, required=True),
        "smtp_port": Key(int, default=587),
        "smtp_tls": Key(str, default="starttls", choices=TLS_MODES),
        "smtp_user": Key(str),
        "smtp_password": Key(str, secret=True),
        "poll_seconds": Key(int, default=30),
        "plus_addressing": Key(bool, default=False),
    }

    def __init__(self, config: ChannelConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self.address: str = str(config["address"]).lower()
        self.domain = self.address.rpartition("@")[2]
        self.from_name: str = str(config.get("from_name") or "")
        self.imap = ImapSettings(
            host=config["imap_host"],
            port=int(config.get("imap_port", 993)),
            tls=str(config.get("imap_tls", "ssl")),
            user=config["imap_user"],
            password=config["imap_password"],
            folder=str(config.get("imap_folder", "INBOX")),
        )
        self.smtp = SmtpSettings(
            host=config["smtp_host"],
            port=int(config.get("smtp_port", 587)),
            tls=str(config.get("smtp_tls", "starttls")),
            user=config.get("smtp_user"),
            password=config.get("smtp_password"),
        )
        self.sent_folder: str | None = config.get("imap_sent_folder")
        self.poll_seconds = max(1, int(config.get("poll_seconds", 30)))
        self.plus_addressing = bool(config.get("plus_addressing", False))
        # The database the thread history lives in, bound by the process that sends (the worker).
        self.db: Database | None = None

    def bind(self, db: Database) -> None:
        self.db = db

    @classmethod
    def check_config(cls, name: str, values: Mapping[str, Any]) -> Sequence[str]:
        problems = []
        address = values.get("address")
        if isinstance(address, str) and not ADDRESS_RE.match(address):
            problems.append(
                f"address: {address!r} is not an e-mail address like support@example.com"
            )
        if isinstance(address, str) and "+" in address.partition("@")[0]:
            problems.append("address: give the plain address; plus_addressing adds the +tag")
        for key in ("imap_port", "smtp_port"):
            port = values.get(key)
            if isinstance(port, int) and not 0 < port < 65536:
                problems.append(f"{key}: {port} is not a TCP port")
        seconds = values.get("poll_seconds")
        if isinstance(seconds, int) and seconds < 1:
            problems.append(f"poll_seconds: must be at least 1, got {seconds}")
        if values.get("smtp_user") and not values.get("smtp_password"):
            problems.append("smtp_password: required with smtp_user")
        return problems

    def describe(self) -> str:
        return (
            f"mailbox {self.address}: IMAP {self.imap.host}:{self.imap.port} ({self.imap.tls}) "
            f"folder {self.imap.folder}, SMTP {self.smtp.host}:{self.smtp.port} ({self.smtp.tls})"
        )

    # --- inbound ---------------------------------------------------------------------------

    def is_own(self, sender: str) -> bool:
        """Mail from our own address (or a +tag of it): our sent copies, loops."""
        local, _, domain = sender.lower().partition("@")
        ours_local = self.address.partition("@")[0]
        return domain == self.domain and (local == ours_local or local.startswith(ours_local + "+"))

    def keep_parts(self, mail: ParsedMail) -> list[StoredPart]:
        """Attachments and inline images into the content-addressed store (blocking I/O)."""
        kept = []
        for part in mail.parts:
            if len(part.data) > MAX_DOWNLOAD_BYTES:
                kept.append(
                    StoredPart(part.name, part.content_type, len(part.data), "", part.inline, None)
                )
                continue
            blob = store_bytes(self.settings.data_dir, part.data, part.content_type, part.name)
            kept.append(
                StoredPart(
                    part.name,
                    blob.content_type,
                    blob.size,
                    blob.sha256,
                    part.inline,
                    part.content_id,
                )
            )
        return kept

    def mail_event(
        self, mail: ParsedMail, raw: bytes, parts: Sequence[StoredPart], uid: int | None = None
    ) -> InboundEvent:
        """One parsed mail as an inbound event; its thread_key is set by threading later."""
        inline = {p.content_id: f"{API_PATH}{p.sha256}" for p in parts if p.content_id and p.sha256}
        shown_html = sanitise_html(mail.html, inline) if mail.html else None
        sender = mail.bounced_recipient or mail.sender
        meta: dict[str, Any] = {
            "subject": _clean(mail.subject),
            "message_id": mail.message_id,
            "from": mail.sender,
            "reply_to": mail.reply_to,
            "to": list(mail.to),
            "cc": list(mail.cc),
            "in_reply_to": list(mail.in_reply_to),
            "references": list(mail.references[-MAX_REFERENCES:]),
        }
        if shown_html:
            meta["html"] = _clean(shown_html)
        if mail.quoted:
            meta["quoted"] = _clean(mail.quoted[:20_000])
        if mail.auto:
            meta["auto"] = mail.auto
        if uid is not None:
            meta["uid"] = uid
        if mail.defects:
            meta["defects"] = list(mail.defects)[:10]
        text = _clean(mail.text or mail.subject)
        return InboundEvent(
            channel=self.name,
            channel_type=self.type,
            external_id=dedupe_key(mail.message_id, mail.sender, raw),
            sender=Sender(
                emails=(sender,),
                name=None if mail.bounced_recipient else mail.sender_name,
            ),
            source="email",
            text=text,
            attachments=tuple(
                Attachment(
                    name=p.name,
                    content_type=p.content_type,
                    size=p.size,
                    ref=f"{REF_PREFIX}{p.sha256}" if p.sha256 else None,
                )
                for p in parts
            ),
            occurred_at=mail.date,
            meta=meta,
            opens_lead=mail.auto is None,
        )

    async def fetch(self, cursor: Mapping[str, Any]) -> tuple[list[InboundEvent], dict[str, Any]]:
        """The protocol's polling call: mails after the cursor's UID as events (a changed
        UIDVALIDITY reads the folder again; the dedupe key keeps that harmless). Nothing is
        flagged here: the worker's sync (hub.channels.email.sync) flags after commit."""
        mailbox = Mailbox(self.imap)
        try:
            await asyncio.to_thread(mailbox.connect)
            uidvalidity, _next = await asyncio.to_thread(mailbox.select)
            last = int(cursor.get("last_uid", 0)) if cursor.get("uidvalidity") == uidvalidity else 0
            uids = await asyncio.to_thread(mailbox.uids_after, last)
            raws = await asyncio.to_thread(mailbox.fetch, uids) if uids else {}
        finally:
            await asyncio.to_thread(mailbox.close)
        events = []
        for uid in sorted(raws):
            try:
                mail = parse_mail(raws[uid])
            except (MailError, ValueError, LookupError) as exc:
                log.warning("mail_unreadable", channel=self.name, uid=uid, error=str(exc))
                continue
            if self.is_own(mail.sender):
                continue
            parts = await asyncio.to_thread(self.keep_parts, mail)
            events.append(self.mail_event(mail, raws[uid], parts, uid))
        return events, {"uidvalidity": uidvalidity, "last_uid": max(raws, default=last)}

    async def download(
        self, attachment: Mapping[str, Any], client: Any, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> Downloaded | None:
        """A mail's parts were kept when the mail was read: this hands them to the store."""
        ref = str(attachment.get("ref") or "")
        if not ref.startswith(REF_PREFIX):
            size = attachment.get("size")
            raise DownloadError(f"attachment too large to keep ({size} bytes)")
        stored = find_stored(self.settings.data_dir, ref.removeprefix(REF_PREFIX))
        if stored is None:
            raise DownloadError("the attachment's bytes are missing from the store")
        data = await asyncio.to_thread(stored.path.read_bytes)
        return Downloaded(data, stored.content_type)

    # --- outbound --------------------------------------------------------------------------

    def _thread_context(self, conn: Connection, thread_key: str) -> dict[str, Any]:
        rows = thread_messages(conn, self.name, thread_key)
        inbound = [r for r in rows if r.direction == "in"]
        context: dict[str, Any] = {"ids": [r.message_id for r in rows]}
        last = inbound[-1] if inbound else (rows[-1] if rows else None)
        if last is not None:
            context["to"] = last.party
            if last.item_id is not None:
                meta = conn.scalar(select(ITEMS.c.meta).where(ITEMS.c.id == last.item_id))
                if isinstance(meta, dict):
                    context["subject"] = meta.get("subject") or ""
                    context["reply_to"] = meta.get("reply_to")
            context["in_reply_to"] = last.message_id
        return context

    def compose(
        self, message: OutboundMessage, to: str, thread_key: str, context: Mapping[str, Any]
    ) -> EmailMessage:
        mail = EmailMessage()
        local, _, domain = self.address.partition("@")
        mail["From"] = Address(self.from_name, local, domain) if self.from_name else self.address
        mail["To"] = to
        subject = str(context.get("subject") or "")
        if subject and subject_key(subject) == " ".join(subject.split()).casefold():
            subject = f"Re: {subject}"  # a reply subject ("Re: ...", "Ответ: ...") stays as is
        # A mail of the hub's own (a reminder notice) names its subject in meta.
        subject = subject or str(message.meta.get("subject") or "")
        mail["Subject"] = subject or f"Message from {self.from_name or self.address}"
        mail["Date"] = format_datetime(utcnow())
        mail["Message-ID"] = own_message_id(thread_key, message.item_id, self.name, self.domain)
        ids = list(context.get("ids", []))
        if context.get("in_reply_to"):
            mail["In-Reply-To"] = context["in_reply_to"]
        if ids:
            chain = ids if len(ids) <= MAX_REFERENCES else [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
            mail["References"] = " ".join(chain)
        if self.plus_addressing:
            mail["Reply-To"] = plus_address(self.address, thread_key)
        mail["Auto-Submitted"] = "no"
        mail.set_content(message.text)
        paragraphs = "".join(
            f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in message.text.split("\n\n")
        )
        mail.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html")
        for attachment in message.attachments:
            url = attachment.url or ""
            stored = (
                find_stored(self.settings.data_dir, url.removeprefix(API_PATH))
                if url.startswith(API_PATH)
                else None
            )
            if stored is None:
                continue
            maintype, _, subtype = stored.content_type.partition("/")
            mail.add_attachment(
                stored.path.read_bytes(),
                maintype=maintype,
                subtype=subtype,
                filename=attachment.name or stored.name,
            )
        return mail

    async def send(self, message: OutboundMessage, client: Any) -> SendResult:
        """A reply in the conversation's mail thread, or a new mail to the contact's address."""
        if not message.text.strip():
            return SendResult("failed", error="nothing to send: the reply is empty")
        context: dict[str, Any] = {}
        if TOKEN_RE.match(message.to):
            thread_key = message.to
            if self.db is None:
                return SendResult(
                    "failed", error=f"channel {self.name}: no database bound to find the thread"
                )
            async with self.db.engine.connect() as conn:
                context = await conn.run_sync(self._thread_context, thread_key)
            to = str(context.get("reply_to") or context.get("to") or "")
            if not to:
                return SendResult("failed", error="no address in this mail thread to reply to")
        else:
            to = message.to
            # No timeline item behind a reminder notice: its own outbox row names the thread.
            own = f"out:{message.item_id}" if message.item_id else f"notice:{uuid.uuid4().hex}"
            thread_key = new_thread_key(self.name, own)
        if not ADDRESS_RE.match(to):
            return SendResult("failed", error=f"{to!r} is not an e-mail address")
        mail = self.compose(message, to, thread_key, context)
        try:
            await submit(self.smtp, mail)
        except SmtpFailure as exc:
            log.warning("smtp_failed", channel=self.name, item_id=message.item_id, error=exc.reason)
            return SendResult("failed", error=exc.reason, retryable=exc.retryable)
        message_id = str(mail["Message-ID"])
        if self.db is not None:
            try:
                await self.db.run_write_retrying(
                    _record_sent,
                    self.name,
                    message_id,
                    thread_key,
                    to,
                    str(mail["Subject"]),
                    message.item_id,
                )
            except Exception as exc:  # sent is sent: a retry must not mail the customer twice
                log.error("sent_mail_unrecorded", channel=self.name, error=str(exc)[:300])
        if self.sent_folder:
            await self._append_sent(bytes(mail))
        return SendResult("sent", external_id=message_id)

    async def _append_sent(self, raw: bytes) -> None:
        """A copy in the Sent folder, so the mailbox shows the whole thread; never fatal."""
        mailbox = Mailbox(self.imap)
        try:
            await asyncio.to_thread(mailbox.connect)
            await asyncio.to_thread(mailbox.append, str(self.sent_folder), raw)
        except (MailboxError, OSError) as exc:
            reason = exc.reason if isinstance(exc, MailboxError) else str(exc)
            log.warning("sent_copy_failed", channel=self.name, error=reason)
        finally:
            await asyncio.to_thread(mailbox.close)


def _clean(text: str) -> str:
    """No NUL characters: PostgreSQL refuses them in text and JSON."""
    return text.replace("\x00", "")


def _record_sent(
    conn: Connection,
    channel: str,
    message_id: str,
    thread_key: str,
    to: str,
    subject: str,
    item_id: int,
) -> None:
    record_message(
        conn,
        channel=channel,
        message_id=message_id,
        thread_key=thread_key,
        direction="out",
        party=to.lower(),
        subject=subject,
        item_id=item_id,
    )
