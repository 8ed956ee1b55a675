"""Timeline items and conversations as the API and live events show them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from hub.models import Conversation, TimelineItem


def item_to_dict(item: TimelineItem | Row[Any]) -> dict[str, Any]:
    return {
        "id": item.id,
        "conversation_id": item.conversation_id,
        "contact_id": item.contact_id,
        "channel": item.channel,
        "channel_type": item.channel_type,
        "direction": item.direction,
        "kind": item.kind,
        "text": item.text,
        "attachments": list(item.attachments or []),
        "status": item.status,
        "error": item.error,
        "external_id": item.external_id,
        "author_id": item.author_id,
        "created_at": item.created_at.isoformat(),
        "meta": dict(item.meta or {}),
    }


def conversation_to_dict(conversation: Conversation | Row[Any]) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "contact_id": conversation.contact_id,
        "channel": conversation.channel,
        "channel_type": conversation.channel_type,
        "status": conversation.status,
        "assignee_id": conversation.assignee_id,
        "last_message_at": conversation.last_message_at.isoformat(),
        "created_at": conversation.created_at.isoformat(),
    }
