"""The wire: an IMAP mailbox (imapclient, blocking, so the caller runs it in a thread) and SMTP
submission (aiosmtplib). Failures become MailboxError/SmtpFailure with a reason in words."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
from imapclient import IMAPClient  # type: ignore[import-untyped]  # ships no type hints
from imapclient.exceptions import (  # type: ignore[import-untyped]  # as above
    IMAPClientError,
    LoginError,
)

IMAP_TIMEOUT = 60.0
SMTP_TIMEOUT = 60.0
FETCH_CHUNK = 200  # UIDs per FETCH command


class MailboxError(Exception):
    """The mailbox cannot be read now (down, refused the login, bad certificate)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    tls: str  # ssl | starttls | none
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    timeout: float = IMAP_TIMEOUT


def describe_error(exc: BaseException) -> str:
    """Why talking to a server failed, in words, without the password."""
    if isinstance(exc, LoginError):
        return f"login refused: {exc}"[:300]
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message or exc}"[:300]
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"[:300]
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"host not found: {exc}"[:300]
    if isinstance(exc, OSError):
        return f"connection lost: {exc.strerror or exc}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


class Mailbox:
    """One IMAP connection to one folder. Every method blocks: call through asyncio.to_thread,
    one call at a time."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        self.client: IMAPClient | None = None
        self.can_idle = False

    def _call(self, name: str, *args: object, **kwargs: object) -> object:
        if self.client is None:
            raise MailboxError("not connected")
        try:
            return getattr(self.client, name)(*args, **kwargs)
        except (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            raise MailboxError(describe_error(exc)) from exc

    def connect(self) -> None:
        s = self.settings
        client = None
        try:
            context = ssl.create_default_context()
            client = IMAPClient(
                s.host, port=s.port, ssl=s.tls == "ssl", ssl_context=context, timeout=s.timeout
            )
            if s.tls == "starttls":
                client.starttls(context)
            client.login(s.user, s.password)
            self.can_idle = b"IDLE" in client.capabilities()
        except (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            if client is not None:  # refused after connecting: close the socket we opened
                with contextlib.suppress(OSError):
                    client.shutdown()
            raise MailboxError(describe_error(exc)) from exc
        self.client = client

    def select(self) -> tuple[int, int]:
        """(UIDVALIDITY, UIDNEXT) of the folder."""
        info = self._call("select_folder", self.settings.folder)
        assert isinstance(info, dict)
        return int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT", 0))

    def uids_after(self, last_uid: int) -> list[int]:
        # "N:*" always names the last message, even when its UID is below N: filter.
        found = self._call("search", ["UID", f"{last_uid + 1}:*"])
        assert isinstance(found, list)
        return sorted(uid for uid in found if uid > last_uid)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        data = self._call("fetch", list(uids), ["RFC822.SIZE"])
        assert isinstance(data, dict)
        return {int(uid): int(v.get(b"RFC822.SIZE", 0)) for uid, v in data.items()}

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw mails; BODY.PEEK leaves \\Seen alone until we have committed them."""
        data = self._call("fetch", list(uids), ["BODY.PEEK[]"])
        assert isinstance(data, dict)
        return {int(uid): bytes(v.get(b"BODY[]", b"")) for uid, v in data.items()}

    def mark_seen(self, uids: Sequence[int]) -> None:
        if uids:
            self._call("add_flags", list(uids), [b"\\Seen"], silent=True)

    def idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the server to announce new mail (IDLE)."""
        self._call("idle")
        try:
            responses = self._call("idle_check", timeout=timeout)
        finally:
            self._call("idle_done")
        return bool(responses)

    def append(self, folder: str, raw: bytes, seen: bool = True) -> None:
        self._call("append", folder, raw, flags=[b"\\Seen"] if seen else [])

    def interrupt(self) -> None:
        """From another thread: break a blocking IDLE so the connection can be closed."""
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.socket().shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except (IMAPClientError, imaplib.IMAP4.error, OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                client.shutdown()


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str  # ssl | starttls | none
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = SMTP_TIMEOUT


class SmtpFailure(Exception):
    """The server refused or could not be reached. `retryable` for 4xx replies and outages."""

    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def _reply_failure(code: int, text: str) -> SmtpFailure:
    reply = f"{code} {' '.join(text.split())}"[:500]
    if 400 <= code < 500:
        return SmtpFailure(f"the mail server deferred the message: {reply}", retryable=True)
    return SmtpFailure(f"the mail server refused the message: {reply}", retryable=False)


async def submit(settings: SmtpSettings, message: EmailMessage) -> None:
    """Hand one message to the submission server; SmtpFailure says why it did not take it."""
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.host,
            port=settings.port,
            username=settings.user or None,
            password=settings.password or None,
            use_tls=settings.tls == "ssl",
            start_tls=settings.tls == "starttls",
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        first = exc.recipients[0] if exc.recipients else None
        if first is None:
            raise SmtpFailure("the mail server refused every recipient", False) from None
        raise _reply_failure(first.code, f"{first.recipient}: {first.message}") from None
    except aiosmtplib.SMTPResponseException as exc:
        raise _reply_failure(exc.code, exc.message) from None
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise SmtpFailure(
            f"mail server {settings.host}:{settings.port} unreachable: {describe_error(exc)}", True
        ) from None
