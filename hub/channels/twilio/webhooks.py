"""Twilio's messaging webhooks as events: inbound SMS/MMS/WhatsApp, and delivery status callbacks.

Pure functions of the POSTed form parameters (see Twilio's "Messaging webhooks" reference)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hub.channels.base import Attachment, InboundEvent, InboundRequest, InvalidPayload, Sender
from hub.channels.twilio.errors import explain
from hub.inbox.status import StatusUpdate, status_event

WHATSAPP = "whatsapp:"
MAX_MEDIA = 10  # Twilio attaches at most ten media files to one message
# Twilio's MessageStatus -> our item status; the ones we do not record are absent.
# queued/sending/accepted/scheduled say no more than "sent" already does once the API took it.
STATUSES: dict[str, str] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
    "partially_delivered": "sent",
}
# A deterministic name for a media file (the system's mimetypes table varies by machine).
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "audio/ogg": ".ogg",
    "audio/mpeg": ".mp3",
    "audio/amr": ".amr",
    "audio/mp4": ".m4a",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
    "application/pdf": ".pdf",
    "text/vcard": ".vcf",
    "text/x-vcard": ".vcf",
}


def form_params(request: InboundRequest) -> dict[str, str]:
    """The urlencoded POST parameters Twilio sends; InvalidPayload for anything else."""
    content_type = request.header("content-type").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidPayload(
            f"unsupported Content-Type {content_type!r}: Twilio posts "
            "application/x-www-form-urlencoded"
        )
    try:
        text = request.body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPayload("malformed urlencoded body") from None
    return dict(pairs)


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise InvalidPayload(f"{name}: required in a Twilio messaging webhook", field=name)
    return value


def _media(params: Mapping[str, str]) -> tuple[Attachment, ...]:
    raw = params.get("NumMedia", "0").strip() or "0"
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise InvalidPayload(f"NumMedia: {raw!r} is not a count of 0 to 10", field="NumMedia")
    attachments = []
    for i in range(int(raw)):
        url = _required(params, f"MediaUrl{i}")
        content_type = params.get(f"MediaContentType{i}") or "application/octet-stream"
        media_sid = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or f"media{i}"
        attachments.append(
            Attachment(
                name=media_sid + EXTENSIONS.get(content_type.lower(), ""),
                content_type=content_type,
                url=url,
                ref=media_sid,
            )
        )
    return tuple(attachments)


def _location(params: Mapping[str, str]) -> dict[str, Any]:
    """A WhatsApp location share: coordinates, and the place's name when one was picked."""
    try:
        lat, lon = float(params["Latitude"]), float(params["Longitude"])
    except (KeyError, ValueError):
        return {}
    place = {k.lower(): params[k] for k in ("Address", "Label") if params.get(k)}
    return {"location": {"latitude": lat, "longitude": lon, **place}}


def message_event(channel: str, channel_type: str, params: Mapping[str, str]) -> InboundEvent:
    """One inbound SMS, MMS or WhatsApp message. The conversation is the address the person
    wrote from ("+1555..." or "whatsapp:+1555..."), which is also where the reply goes."""
    sid = _required(params, "MessageSid")
    address = _required(params, "From")
    whatsapp = address.startswith(WHATSAPP)
    to = params.get("To", "")
    geo = {
        key.removeprefix("From").lower(): params[key]
        for key in ("FromCity", "FromState", "FromZip", "FromCountry")
        if params.get(key)
    }
    meta: dict[str, Any] = {
        "to": to,
        "dialled_number": to.removeprefix(WHATSAPP) or None,
        **({"num_segments": int(n)} if (n := params.get("NumSegments", "")).isdigit() else {}),
        **({"from_geo": geo} if geo else {}),
        **{
            name: params[key]
            for name, key in (
                ("wa_id", "WaId"),
                ("message_type", "MessageType"),
                ("messaging_service_sid", "MessagingServiceSid"),
                ("replied_to", "OriginalRepliedMessageSid"),
            )
            if params.get(key)
        },
        **_location(params),
    }
    return InboundEvent(
        channel=channel,
        channel_type=channel_type,
        external_id=sid,
        source="whatsapp" if whatsapp else "sms",
        sender=Sender(
            phones=(address.removeprefix(WHATSAPP),),
            name=params.get("ProfileName", "").strip() or None,
        ),
        text=params.get("Body", ""),
        attachments=_media(params),
        meta=meta,
        thread_key=address,
    )


def status_events(
    channel: str, channel_type: str, params: Mapping[str, str], item_id: int | None
) -> list[InboundEvent]:
    """A delivery status callback; none for statuses that add nothing (queued, sending)."""
    sid = _required(params, "MessageSid")
    raw = (params.get("MessageStatus") or _required(params, "SmsStatus")).strip().lower()
    status = STATUSES.get(raw)
    if status is None:
        return []
    code = params.get("ErrorCode", "").strip()
    details = (("provider_status", raw),) + ((("error_code", code),) if code else ())
    error = None
    if status == "failed":
        error = explain(code or None, params.get("ErrorMessage") or None)
        if raw == "canceled" and not code:
            error = "the scheduled message was canceled before it was sent"
    report = StatusUpdate(status, sid, item_id, error, details)
    return [status_event(channel, channel_type, f"status:{sid}:{raw}", report)]
