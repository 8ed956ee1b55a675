"""Telegram Updates, read with aiogram's types, as inbound events: what the timeline shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiogram.types import CallbackQuery, Message, Update, User
from pydantic import ValidationError

from hub.channels.base import Attachment, InboundEvent, InvalidPayload, Sender
from hub.channels.telegram.callbacks import (
    HANDLERS,
    START_HANDLERS,
    ButtonPress,
    StartCommand,
    split_callback_data,
)
from hub.channels.telegram.channel import CHANNEL_TYPE

# The updates `hub telegram set-webhook` asks for: everything else is acknowledged and ignored.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
# Things people send that the timeline cannot render yet: kept as a placeholder, so the
# operator knows something arrived. Every other content type is a service message.
PLACEHOLDER_CONTENT = frozenset(
    {"poll", "dice", "game", "story", "paid_media", "checklist", "live_photo", "giveaway"}
)


def read_update(body: bytes) -> Update:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayload(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidPayload("the body must be a Telegram Update object")
    try:
        return Update.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(body)"
        raise InvalidPayload(f"not a Telegram Update: {where}: {first['msg']}", where) from None


def message_key(message: Message) -> str:
    """The dedupe key of a message: message ids count per chat, so the chat is part of it."""
    return f"{message.chat.id}:{message.message_id}"


def full_name(first: str | None, last: str | None) -> str | None:
    return " ".join(part for part in (first, last) if part) or None


def sender_of(user: User) -> Sender:
    # The user id is the identity: usernames change and can be taken by someone else.
    return Sender(
        telegram_id=str(user.id),
        telegram_username=user.username,
        name=full_name(user.first_name, user.last_name),
    )


def as_datetime(value: datetime | int) -> datetime:
    """aiogram reads Unix times into aware datetimes; the type also allows the raw number."""
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)


def international(phone: str) -> str:
    """Telegram gives contact phones in international form, often without the '+'."""
    phone = phone.strip()
    return phone if phone.startswith("+") else f"+{phone}"


def _file(kind: str, media: Any, name: str, content_type: str) -> tuple[Attachment, dict[str, Any]]:
    attachment = Attachment(
        name=getattr(media, "file_name", None) or name,
        content_type=getattr(media, "mime_type", None) or content_type,
        size=media.file_size,
        ref=media.file_id,
    )
    meta: dict[str, Any] = {"media": kind, "file_unique_id": media.file_unique_id}
    if duration := getattr(media, "duration", None):
        meta["duration"] = duration
    return attachment, meta


def content_of(message: Message) -> tuple[str, tuple[Attachment, ...], dict[str, Any]] | None:
    """(text, attachments, meta) of a message a person sent; None for a service message."""
    text = message.text or message.caption or ""
    found: tuple[Attachment, dict[str, Any]] | None = None
    meta: dict[str, Any] = {}
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        name = f"photo_{largest.file_unique_id}.jpg"
        found = _file("photo", largest, name, "image/jpeg")
    elif message.animation:  # an animation also arrives as a document: this is the truer kind
        found = _file("animation", message.animation, "animation.mp4", "video/mp4")
    elif message.document:
        found = _file("document", message.document, "document", "application/octet-stream")
    elif message.voice:
        found = _file("voice", message.voice, "voice.ogg", "audio/ogg")
    elif message.video:
        found = _file("video", message.video, "video.mp4", "video/mp4")
    elif message.video_note:
        found = _file("video_note", message.video_note, "video_note.mp4", "video/mp4")
    elif message.audio:
        found = _file("audio", message.audio, "audio.mp3", "audio/mpeg")
    elif message.sticker:
        emoji = message.sticker.emoji
        text = f"[sticker {emoji}]" if emoji else "[sticker]"
        meta["sticker"] = {"emoji": emoji, "set_name": message.sticker.set_name}
    elif message.venue:
        venue = message.venue
        text = f"[venue {venue.title}, {venue.address}]"
        meta["location"] = {
            "latitude": venue.location.latitude,
            "longitude": venue.location.longitude,
        }
        meta["venue"] = {"title": venue.title, "address": venue.address}
    elif message.location:
        location = message.location
        text = f"[location {location.latitude:.6f}, {location.longitude:.6f}]"
        meta["location"] = {"latitude": location.latitude, "longitude": location.longitude}
    elif message.contact:
        contact = message.contact
        who = full_name(contact.first_name, contact.last_name)
        phone = international(contact.phone_number)
        text = f"[contact {who} {phone}]" if who else f"[contact {phone}]"
        meta["contact"] = {
            "phone_number": phone,
            "name": who,
            "user_id": str(contact.user_id) if contact.user_id else None,
        }
    elif not message.text:
        kind = str(getattr(message.content_type, "value", message.content_type))  # a str Enum
        if kind not in PLACEHOLDER_CONTENT:
            return None
        text, meta["unsupported"] = f"[{kind}]", kind
    if found is None:
        return text, (), meta
    attachment, media_meta = found
    return text, (attachment,), meta | media_meta


def message_events(
    channel: str, update: Update, message: Message, edited: bool = False
) -> list[InboundEvent]:
    user = message.from_user
    if user is None:  # a channel post or an anonymous admin: nobody to answer
        return []
    if not edited and message.text and message.text.startswith("/start "):
        payload = message.text.removeprefix("/start ").strip()
        for prefix, handler in START_HANDLERS.items():
            if payload.startswith(prefix):
                command = StartCommand(
                    channel=channel,
                    update_id=update.update_id,
                    payload=payload,
                    user_id=str(user.id),
                    username=user.username,
                    name=full_name(user.first_name, user.last_name),
                    chat_id=str(message.chat.id),
                    message_id=message.message_id,
                )
                return handler(command)
    content = content_of(message)
    if content is None:
        return []
    text, attachments, meta = content
    proven: tuple[str, ...] = ()
    if message.contact is not None and message.contact.user_id == user.id:
        # Telegram lets one share only one's own number as one's own contact: proof, not a claim.
        proven = (international(message.contact.phone_number),)
    meta = {"telegram": {"chat_id": message.chat.id, "message_id": message.message_id}} | meta
    return [
        InboundEvent(
            channel=channel,
            channel_type=CHANNEL_TYPE,
            # An edit is its own event (deduped by its update id) revising the message's item.
            external_id=f"update:{update.update_id}" if edited else message_key(message),
            revises=message_key(message) if edited else None,
            sender=sender_of(user),
            source="telegram",
            text=text,
            attachments=attachments,
            occurred_at=as_datetime(
                (message.edit_date or message.date) if edited else message.date
            ),
            meta=meta,
            thread_key=str(message.chat.id),
            proven_phones=proven,
        )
    ]


def press_of(channel: str, update: Update, query: CallbackQuery) -> ButtonPress | None:
    route = split_callback_data(query.data)
    if route is None:
        return None
    handler, args = route
    message = query.message
    return ButtonPress(
        channel=channel,
        update_id=update.update_id,
        query_id=query.id,
        handler=handler,
        args=args,
        user_id=str(query.from_user.id),
        username=query.from_user.username,
        name=full_name(query.from_user.first_name, query.from_user.last_name),
        chat_id=str(message.chat.id) if message is not None else None,
        message_id=message.message_id if message is not None else None,
    )


def update_events(channel: str, update: Update) -> list[InboundEvent]:
    """The events of one Update; [] for what the hub acknowledges and ignores."""
    if update.message is not None:
        return message_events(channel, update, update.message)
    if update.edited_message is not None:
        return message_events(channel, update, update.edited_message, edited=True)
    if update.callback_query is not None:
        press = press_of(channel, update, update.callback_query)
        handler = HANDLERS.get(press.handler) if press is not None else None
        if press is None or handler is None:
            return []  # not a hub button, or its owner is gone: acknowledged, nothing stored
        return handler(press)
    return []  # my_chat_member, chat_member, channel posts...: nothing a person wrote
