"""The Channel protocol: values that cross from a provider into the hub and back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from hub.settings import ChannelConfig, Key, Settings

Direction = Literal["in", "out", "internal"]
ItemKind = Literal["message", "call", "note", "form", "event"]
LeadSource = Literal["telegram", "sms", "whatsapp", "email", "form", "call"]
MAX_DOWNLOAD_BYTES = 25 * 1024 * 1024  # the largest attachment the worker fetches and keeps


class InvalidPayload(Exception):
    """The provider (or a browser) sent something we cannot accept; answered with a 400."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class InboundRequest:
    """An HTTP request as a channel sees it: no framework types."""

    method: str
    path: str
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    remote: str | None = None
    url: str = ""  # the URL the provider called, as configured in public_url

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class Sender:
    """Who an event is from, as the provider names them; identity matching normalises it."""

    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    telegram_id: str | None = None
    telegram_username: str | None = None
    name: str | None = None
    company: str | None = None


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int | None = None
    url: str | None = None  # where the worker fetches it from
    ref: str | None = None  # the provider's own file id


@dataclass(frozen=True)
class Downloaded:
    """A provider's file, fetched by the worker: the bytes and what the provider says they are."""

    data: bytes = field(repr=False)
    content_type: str | None = None


class DownloadError(Exception):
    """A file the worker could not fetch. `retryable` for a provider that is down or slow
    (the job runs again later); otherwise final, and `reason` goes on the timeline item, so
    it names what happened in words and never carries a token or a signed URL."""

    def __init__(
        self, reason: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class InboundEvent:
    """One thing that happened on a channel, with its dedupe key (channel + external_id)."""

    channel: str
    channel_type: str
    external_id: str
    sender: Sender
    kind: ItemKind = "message"
    source: LeadSource | None = None  # the lead source when this event opens a lead
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    direction: Direction = "in"
    occurred_at: datetime | None = None
    form_id: str | None = None
    utm: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)  # kept on the contact
    meta: Mapping[str, Any] = field(default_factory=dict)
    thread_key: str | None = None  # the provider's conversation (chat id, mail thread)
    opens_lead: bool = True
    # Phones the provider proves belong to the sender (a Telegram share of one's own contact):
    # unlike a typed phone, such proof links the phone and merges its other owner at once.
    proven_phones: tuple[str, ...] = ()
    # The external_id of an earlier item this event edits (a provider-side message edit):
    # that item's text changes and its previous texts are kept in meta["edits"].
    revises: str | None = None


@dataclass(frozen=True)
class ProviderAnswer:
    """What the provider must get back once the events are committed."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    item_id: int
    channel: str
    to: str  # the recipient's address on this channel (chat id, E.164, e-mail)
    text: str
    attachments: tuple[Attachment, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    status: Literal["queued", "sent", "delivered", "failed"]
    external_id: str | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None


class Channel(ABC):
    """A provider adapter. Webhook channels implement verify/parse/ack; polling ones fetch."""

    type: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]  # inbound, outbound, attachments, polling
    config_keys: ClassVar[Mapping[str, Key]] = {}
    # The status a failed verify() answers: 401 for shared secrets, 403 for signatures.
    reject_status: ClassVar[int] = 401
    # Which identity addresses a person here (phone, email, telegram) when the conversation
    # has no provider thread of its own; None for channels that cannot be written to.
    address_kind: ClassVar[str | None] = None

    def __init__(self, config: ChannelConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.name = config.name

    @classmethod
    def check_config(cls, name: str, values: Mapping[str, Any]) -> Sequence[str]:
        """Problems beyond key types (a missing pairing, a bad URL), one line each."""
        return ()

    def verify(self, request: InboundRequest) -> bool:
        """Constant-time authenticity check, no I/O."""
        raise TypeError(f"{self.type} channels are not called by webhook")

    def parse(self, request: InboundRequest) -> list[InboundEvent]:
        """Pure and synchronous: the request body to events; InvalidPayload for a bad body."""
        raise TypeError(f"{self.type} channels are not called by webhook")

    def ack(self, events: Sequence[InboundEvent]) -> ProviderAnswer:
        return ProviderAnswer()

    async def send(self, message: OutboundMessage, client: Any) -> SendResult:
        return SendResult(status="failed", error=f"{self.type} channels cannot send messages")

    async def fetch(self, cursor: Mapping[str, Any]) -> tuple[list[InboundEvent], dict[str, Any]]:
        raise TypeError(f"{self.type} channels are not polled")

    async def download(
        self, attachment: Mapping[str, Any], client: Any, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> Downloaded | None:
        """The bytes of one stored attachment (a timeline item's attachments[i]: name,
        content_type, size, source_url?, ref?), at most `max_bytes` of them; the HTTP client
        (an aiohttp.ClientSession) is injected. None: this channel has no files to fetch.
        Raises DownloadError for a file too large, refused, gone, or (retryable) unreachable."""
        return None

    @abstractmethod
    def describe(self) -> str:
        """One line for logs and `hub check-config`: what this channel is connected to."""
