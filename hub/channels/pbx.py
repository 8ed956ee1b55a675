"""The generic PBX channel: call events from Asterisk, FreePBX or a cloud PBX, as signed JSON.

POST /webhooks/pbx/<channel> with `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body,
keyed with the channel's secret>` and a body like
{"event": "missed", "call_id": "1732570000.42", "from": "+998901234567", "to": "+998712000001",
 "direction": "in", "duration": 0, "recording_url": "https://pbx.example.com/rec/42.wav"}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from hub.channels.base import Channel, InboundEvent, InboundRequest, InvalidPayload, ProviderAnswer
from hub.inbox.calls import MAX_CALL_ID, MISSED_REASONS, CallEvent, call_event
from hub.settings import ChannelConfig, Key, Settings

SIGNATURE_PREFIX = "sha256="
STATE_EVENTS = ("ringing", "answered", "ended", "missed")
MIN_SECRET = 16
MAX_TEXT = 2000
MAX_NUMBER = 64  # a phone number, SIP user or extension
MAX_DURATION = 7 * 24 * 3600
CALL_ID_RE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_CALL_ID}}}$")  # printable ASCII, no spaces
# Asterisk's ${DIALSTATUS} (and common PBX words) for why nobody answered.
REASONS = {
    **{r: r for r in MISSED_REASONS},
    "noanswer": "no-answer",
    "no_answer": "no-answer",
    "timeout": "no-answer",
    "chanunavail": "failed",
    "congestion": "failed",
    "invalidargs": "failed",
    "cancel": "abandoned",  # Asterisk: the caller hung up while it rang
    "canceled": "cancelled",
    "hangup": "abandoned",
}
ACK = b'{"ok": true}'


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidPayload(f"{name}: required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidPayload(f"{name}: must be a string", field=name)
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise InvalidPayload(f"{name}: longer than {MAX_TEXT} characters", field=name)
    return text


def _seconds(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DURATION:
        raise InvalidPayload(f"{name}: must be a whole number of seconds, 0 or more", field=name)
    return value


def _url(body: Mapping[str, Any], name: str) -> str | None:
    value = _text(body, name)
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidPayload(f"{name}: must be an http(s) URL", field=name)
    return value


def _occurred_at(body: Mapping[str, Any]) -> str | None:
    value = _text(body, "timestamp")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        raise InvalidPayload(
            "timestamp: must be an ISO 8601 time, e.g. 2026-11-25T10:00:00Z", field="timestamp"
        ) from None


def parse_event(channel: str, channel_type: str, body: Mapping[str, Any]) -> InboundEvent:
    """One PBX call event in the contract's JSON shape."""
    event = _text(body, "event", required=True)
    if event not in STATE_EVENTS:
        raise InvalidPayload(f"event: one of {', '.join(STATE_EVENTS)}", field="event")
    call_id = _text(body, "call_id", required=True) or ""
    if not CALL_ID_RE.match(call_id):
        raise InvalidPayload(
            f"call_id: 1 to {MAX_CALL_ID} printable characters without spaces", field="call_id"
        )
    raw_direction = _text(body, "direction") or "in"
    if raw_direction not in ("in", "out"):
        raise InvalidPayload("direction: 'in' or 'out'", field="direction")
    direction: Literal["in", "out"] = "in" if raw_direction == "in" else "out"
    party_key, line_key = ("from", "to") if direction == "in" else ("to", "from")
    party = _text(body, party_key, required=True) or ""
    for key, number in ((party_key, party), (line_key, _text(body, line_key) or "")):
        if len(number) > MAX_NUMBER:
            raise InvalidPayload(f"{key}: longer than {MAX_NUMBER} characters", field=key)
    reason = None
    raw_reason = _text(body, "reason")
    if event == "missed":
        reason = REASONS.get((raw_reason or "no-answer").lower())
        if reason is None:
            raise InvalidPayload(f"reason: one of {', '.join(MISSED_REASONS)}", field="reason")
    duration = _seconds(body, "duration")
    recording_url = _url(body, "recording_url")
    call = CallEvent(
        call_id=call_id,
        event=event,
        direction=direction,
        party=party,
        line=_text(body, line_key) or None,
        duration=duration,
        # Talk time (Asterisk's billsec) proves the call was answered, even when the
        # "answered" event is lost or late.
        answered=event == "ended" and bool(duration),
        reason=reason,
        recording_url=recording_url,
        recording_duration=_seconds(body, "recording_duration"),
        voicemail=bool(recording_url) and event == "missed",
        comment=_text(body, "comment") or None,
        provider_status=raw_reason or None,
        occurred_at=_occurred_at(body),
        step="pbx",
    )
    return call_event(channel, channel_type, event, call, name=_text(body, "name") or None)


class Pbx(Channel):
    type: ClassVar[str] = "pbx"
    capabilities: ClassVar[frozenset[str]] = frozenset({"inbound"})
    reject_status: ClassVar[int] = 401
    config_keys: ClassVar[Mapping[str, Key]] = {"secret": Key(str, required=True, secret=True)}

    def __init__(self, config: ChannelConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self._secret = str(config["secret"]).encode()

    @classmethod
    def check_config(cls, name: str, values: Mapping[str, Any]) -> Sequence[str]:
        secret = values.get("secret")
        if isinstance(secret, str) and len(secret) < MIN_SECRET:
            return [
                f"secret: at least {MIN_SECRET} characters (e.g. the output of "
                "`openssl rand -hex 32`)"
            ]
        return ()

    def describe(self) -> str:
        return f"PBX webhook /webhooks/pbx/{self.name} (HMAC-SHA256 signed call events)"

    def verify(self, request: InboundRequest) -> bool:
        """X-Hub-Signature: sha256=<hex HMAC of the raw body>, compared in constant time."""
        header = request.header("x-hub-signature").strip()
        if not header.lower().startswith(SIGNATURE_PREFIX):
            return False
        given = header[len(SIGNATURE_PREFIX) :].strip().lower()
        expected = hmac.new(self._secret, request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode("ascii", "replace"), expected.encode())

    def parse(self, request: InboundRequest) -> list[InboundEvent]:
        if request.path.rstrip("/") != f"/webhooks/{self.type}/{self.name}":
            raise InvalidPayload(
                f"no PBX webhook {request.path!r}: post to /webhooks/pbx/{self.name}"
            )
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise InvalidPayload("malformed JSON body") from None
        if not isinstance(body, dict):
            raise InvalidPayload("the body must be a JSON object with event and call_id")
        return [parse_event(self.name, self.type, body)]

    def ack(self, events: Sequence[InboundEvent]) -> ProviderAnswer:
        return ProviderAnswer(200, ACK, "application/json")
