"""The Twilio channel: SMS and WhatsApp in (signed webhooks), out (Messages API), and delivery
status callbacks, on one account."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from twilio.request_validator import RequestValidator

from hub.channels.base import (
    MAX_DOWNLOAD_BYTES,
    Channel,
    Downloaded,
    DownloadError,
    InboundEvent,
    InboundRequest,
    InvalidPayload,
    OutboundMessage,
    ProviderAnswer,
    SendResult,
)
from hub.channels.downloads import DOWNLOAD_SECONDS, read_capped, status_error, unreachable
from hub.channels.twilio import voice
from hub.channels.twilio.rest import Account, create_message
from hub.channels.twilio.webhooks import WHATSAPP, form_params, message_event, status_events
from hub.settings import ChannelConfig, Key, Settings

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
# A Twilio sender: an E.164 number, a short code, or an alphanumeric sender id.
SENDER_RE = re.compile(r"^(\+[1-9]\d{6,14}|\d{3,8}|[A-Za-z0-9 ]{1,11})$")
WHATSAPP_SENDER_RE = re.compile(r"^(whatsapp:)?\+[1-9]\d{6,14}$")


class Twilio(Channel):
    type: ClassVar[str] = "twilio"
    capabilities: ClassVar[frozenset[str]] = frozenset({"inbound", "outbound", "attachments"})
    reject_status: ClassVar[int] = 403
    address_kind: ClassVar[str | None] = "phone"  # no thread yet: a text to their phone
    config_keys: ClassVar[Mapping[str, Key]] = {
        "account_sid": Key(str, required=True),
        "auth_token": Key(str, required=True, secret=True),
        "from_number": Key(str, required=True),
        "whatsapp_from": Key(str),
        "api_base": Key(str, default="https://api.twilio.com"),
        **voice.VOICE_KEYS,  # Twilio Voice (issue 7)
    }

    def __init__(self, config: ChannelConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self.account = Account(
            sid=config["account_sid"],
            token=config["auth_token"],
            api_base=str(config.get("api_base", "https://api.twilio.com")).rstrip("/"),
        )
        self.from_number: str = config["from_number"]
        whatsapp = config.get("whatsapp_from")
        self.whatsapp_from = (
            None if not whatsapp else WHATSAPP + str(whatsapp).removeprefix(WHATSAPP)
        )
        self._validator = RequestValidator(self.account.token)

    @classmethod
    def check_config(cls, name: str, values: Mapping[str, Any]) -> Sequence[str]:
        problems = []
        sid = values.get("account_sid")
        if isinstance(sid, str) and not ACCOUNT_SID_RE.match(sid):
            problems.append(
                f"account_sid: {sid!r} is not an Account SID (AC and 32 hex digits, "
                "on the Twilio console's front page)"
            )
        sender = values.get("from_number")
        if isinstance(sender, str) and not SENDER_RE.match(sender):
            hint = " (put WhatsApp senders in whatsapp_from)" if WHATSAPP in sender else ""
            problems.append(
                f"from_number: {sender!r} is not an E.164 number like +15550001111, "
                f"a short code or a sender id{hint}"
            )
        whatsapp = values.get("whatsapp_from")
        if isinstance(whatsapp, str) and not WHATSAPP_SENDER_RE.match(whatsapp):
            problems.append(f"whatsapp_from: {whatsapp!r} is not like 'whatsapp:+15550002222'")
        api_base = values.get("api_base")
        if isinstance(api_base, str) and not re.match(r"^https?://[^/\s]+/?$", api_base):
            problems.append(f"api_base: {api_base!r} is not an http(s) URL without a path")
        return problems + voice.check_voice_config(values)

    def describe(self) -> str:
        whatsapp = f", WhatsApp from {self.whatsapp_from}" if self.whatsapp_from else ""
        return f"Twilio account {self.account.sid}: SMS from {self.from_number}{whatsapp}"

    def webhook_url(self, kind: str) -> str | None:
        """Where Twilio must call us, or None without a public_url."""
        public = self.settings.public_url
        return f"{public}/webhooks/{self.type}/{self.name}/{kind}" if public else None

    def _voice_url(self, kind: str) -> str:
        """Where TwiML sends Twilio next: public_url's, else a path on the host Twilio called."""
        return self.webhook_url(kind) or f"/webhooks/{self.type}/{self.name}/{kind}"

    def _webhook_kind(self, request: InboundRequest) -> str:
        prefix = f"/webhooks/{self.type}/{self.name}"
        rest = request.path.removeprefix(prefix).strip("/")
        if rest not in ("sms", "status", *voice.KINDS):
            raise InvalidPayload(
                f"no Twilio webhook {request.path!r}: messages go to {prefix}/sms, "
                f"delivery reports to {prefix}/status and calls to {prefix}/voice"
            )
        return rest

    def verify(self, request: InboundRequest) -> bool:
        """X-Twilio-Signature over the URL Twilio called (public_url + path + query) and the
        POST parameters, checked by twilio's own validator (constant-time)."""
        signature = request.header("x-twilio-signature")
        if not signature or not request.url:
            return False
        try:
            params = form_params(request)
        except InvalidPayload:
            return False  # Twilio signs its messaging webhooks' form parameters; nothing else
        return bool(self._validator.validate(request.url, params, signature))

    def parse(self, request: InboundRequest) -> list[InboundEvent]:
        kind = self._webhook_kind(request)
        params = form_params(request)
        if kind == "sms":
            return [message_event(self.name, self.type, params)]
        if kind in voice.KINDS:
            operators = len(self.config.get("voice_operators") or ())
            return voice.voice_events(self.name, self.type, kind, params, operators)
        raw_item = request.query.get("item", "")
        item_id = int(raw_item) if raw_item.isdigit() else None
        return status_events(self.name, self.type, params, item_id)

    def ack(self, events: Sequence[InboundEvent]) -> ProviderAnswer:
        if any(event.kind == "call" for event in events):  # the voice webhooks' TwiML
            return voice.answer(
                events,
                operators=list(self.config.get("voice_operators") or ()),
                timeout=int(self.config.get("voice_timeout", 20)),
                message=str(self.config.get("voice_message", voice.DEFAULT_MESSAGE)),
                language=str(self.config.get("voice_language", "en-US")),
                longest=int(self.config.get("voice_max_message_seconds", 120)),
                url_of=self._voice_url,
            )
        # Empty TwiML: Twilio sends nothing on its own; replies go out through the API.
        return ProviderAnswer(200, EMPTY_TWIML, "text/xml")

    async def send(self, message: OutboundMessage, client: Any) -> SendResult:
        """SMS, or WhatsApp when the conversation's address is "whatsapp:+..."."""
        if message.to.startswith(WHATSAPP):
            if self.whatsapp_from is None:
                return SendResult(
                    "failed",
                    error=f"channel {self.name}: set whatsapp_from to reply on WhatsApp",
                )
            sender = self.whatsapp_from
        else:
            sender = self.from_number
        media = [a.url for a in message.attachments if a.url]
        if not message.text.strip() and not media:
            return SendResult("failed", error="nothing to send: the reply is empty")
        callback = self.webhook_url("status")
        if callback is not None:
            # Our item id in the URL (signed like the rest) finds the item even when the report
            # arrives before the send's result is committed.
            callback += f"?item={message.item_id}"
        if isinstance(client, aiohttp.ClientSession):
            return await create_message(
                client, self.account, sender, message.to, message.text, media, callback
            )
        async with aiohttp.ClientSession() as session:  # called outside the worker
            return await create_message(
                session, self.account, sender, message.to, message.text, media, callback
            )

    def _media_host_trusted(self, url: str) -> bool:
        """The account's credentials go only to Twilio: the configured api_base's host, or
        a twilio.com host over https (media URLs name api.twilio.com even with a proxy)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return False
        base = urlsplit(self.account.api_base)
        if parts.scheme == base.scheme and parts.netloc.lower() == base.netloc.lower():
            return True
        return parts.scheme == "https" and (host == "twilio.com" or host.endswith(".twilio.com"))

    async def download(
        self, attachment: Mapping[str, Any], client: Any, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> Downloaded | None:
        """GET MediaUrlN with the account's credentials (HTTP basic auth). Twilio answers with
        a redirect to its media store, followed without the credentials (aiohttp drops them
        on another origin)."""
        url = attachment.get("source_url")
        if not isinstance(url, str) or not url:
            return None
        if not self._media_host_trusted(url):
            raise DownloadError(
                "the media URL is not on Twilio's API host: not fetched with the account's "
                "credentials"
            )
        credentials = {
            "Authorization": aiohttp.encode_basic_auth(self.account.sid, self.account.token)
        }
        own = not isinstance(client, aiohttp.ClientSession)
        http: aiohttp.ClientSession = aiohttp.ClientSession() if own else client
        try:
            async with http.get(
                url,
                headers=credentials,
                allow_redirects=True,
                timeout=aiohttp.ClientTimeout(total=DOWNLOAD_SECONDS),
            ) as response:
                if response.status != 200:
                    raise status_error(response.status, "Twilio", "the media file")
                return await read_capped(response, max_bytes, "Twilio")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unreachable(exc, "Twilio") from None
        finally:
            if own:
                await http.close()
