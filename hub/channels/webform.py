"""Website forms: a submission (urlencoded or JSON) becomes a form item and a lead with its UTM."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from hub.channels.base import (
    Channel,
    InboundEvent,
    InboundRequest,
    InvalidPayload,
    ProviderAnswer,
    Sender,
)
from hub.leads.emails import normalize_email
from hub.leads.phones import normalize_phone
from hub.settings import ChannelConfig, FormConfig, Settings

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
HONEYPOT = "_gotcha"
# Fields the embed script and plain HTML forms send that are about the page, not the person.
PAGE_FIELDS = ("page_url", "referrer")
MAX_VALUE_CHARS = 2000
MAX_MESSAGE_CHARS = 10000
MAX_EXTRA_FIELDS = 30
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{8,200}$")
FIELD_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _decode_body(request: InboundRequest) -> dict[str, Any]:
    content_type = request.header("content-type").split(";")[0].strip().lower()
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("the body is not UTF-8") from None
    if content_type == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidPayload(f"malformed JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict):
            raise InvalidPayload("the JSON body must be an object of field: value")
        return data
    if content_type in ("application/x-www-form-urlencoded", ""):
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
        except ValueError:
            raise InvalidPayload("malformed urlencoded body") from None
        return dict(pairs)
    raise InvalidPayload(
        f"unsupported Content-Type {content_type!r}: send application/json "
        "or application/x-www-form-urlencoded"
    )


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidPayload(f"{name}: must be a string", field=name)
    text = str(value).strip()
    limit = MAX_MESSAGE_CHARS if name == "message" else MAX_VALUE_CHARS
    if len(text) > limit:
        raise InvalidPayload(f"{name}: longer than {limit} characters", field=name)
    return text


class WebForm(Channel):
    type: ClassVar[str] = "form"
    capabilities: ClassVar[frozenset[str]] = frozenset({"inbound"})
    reject_status: ClassVar[int] = 403

    def __init__(self, config: ChannelConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self.form: FormConfig = settings.forms[config.name]

    def describe(self) -> str:
        origins = ", ".join(self.form.allowed_origins) or "same origin only"
        return f"form {self.form.id}: fields {', '.join(self.form.fields)}; origins {origins}"

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.form.allowed_origins or origin in self.form.allowed_origins

    def verify(self, request: InboundRequest) -> bool:
        """A browser on a foreign page is refused; a request with no Origin is a server post."""
        origin = request.header("origin")
        if not origin or origin == "null":
            return not origin or "*" in self.form.allowed_origins
        if self.origin_allowed(origin):
            return True
        public = self.settings.public_url
        if public:
            parts = urlsplit(public)
            return origin == f"{parts.scheme}://{parts.netloc}"
        return False

    def idempotency_key(self, request: InboundRequest) -> str | None:
        key = request.header("idempotency-key").strip()
        if not key:
            return None
        if not IDEMPOTENCY_KEY_RE.match(key):
            raise InvalidPayload(
                "Idempotency-Key: 8 to 200 characters of letters, digits, '.', '_', ':' or '-'",
                field="Idempotency-Key",
            )
        return key

    def parse(self, request: InboundRequest) -> list[InboundEvent]:
        data = _decode_body(request)
        if _text(HONEYPOT, data.get(HONEYPOT)):
            return []  # a bot filled the hidden field: answered like success, nothing stored
        region = self.settings.default_region
        values = {name: _text(name, data.get(name)) for name in self.form.fields}
        for name in self.form.required:
            if not values.get(name):
                raise InvalidPayload(f"{name}: required", field=name)
        phone = values.get("phone", "")
        if phone and normalize_phone(phone, region) is None:
            hint = "" if region else " (include the country code, e.g. +998...)"
            raise InvalidPayload(f"phone: {phone!r} is not a valid phone number{hint}", "phone")
        email = values.get("email", "")
        if email:
            if (normalized := normalize_email(email)) is None:
                raise InvalidPayload(f"email: {email!r} is not a valid e-mail address", "email")
            email = normalized
        utm = {k[4:]: _text(k, data[k]) for k in UTM_KEYS if data.get(k)}
        page = {k: _text(k, data[k]) for k in PAGE_FIELDS if data.get(k)}
        if "page_url" not in page and request.header("referer"):
            page["page_url"] = request.header("referer")[:MAX_VALUE_CHARS]
        known = set(self.form.fields) | set(UTM_KEYS) | set(PAGE_FIELDS) | {HONEYPOT}
        extras = {k: v for k, v in data.items() if k not in known}
        if len(extras) > MAX_EXTRA_FIELDS:
            raise InvalidPayload(f"too many fields: at most {MAX_EXTRA_FIELDS} extra fields")
        fields: dict[str, str] = {}
        for key, value in extras.items():
            if not FIELD_NAME_RE.match(key):
                raise InvalidPayload(f"{key[:64]!r}: not a field name", field=key[:64])
            if text := _text(key, value):
                fields[key] = text
        idem = self.idempotency_key(request)
        external_id = f"idem:{idem}" if idem else f"post:{uuid.uuid4().hex}"
        summary = values.get("message", "")
        return [
            InboundEvent(
                channel=self.form.id,
                channel_type=self.type,
                external_id=external_id,
                kind="form",
                source="form",
                sender=Sender(
                    phones=(phone,) if phone else (),
                    emails=(email,) if email else (),
                    name=values.get("name") or None,
                    company=values.get("company") or None,
                ),
                text=summary,
                form_id=self.form.id,
                utm=utm,
                fields=fields,
                meta={"form": {k: v for k, v in values.items() if v}, **page},
            )
        ]

    def ack(self, events: Sequence[InboundEvent]) -> ProviderAnswer:
        return ProviderAnswer(status=201)

    def cors_headers(self, origin: str) -> Mapping[str, str]:
        if not origin or not self.origin_allowed(origin):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "Retry-After",
            "Vary": "Origin",
        }
