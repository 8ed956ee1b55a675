"""Auto-acknowledgement: the text a new lead gets back on its own channel, once per lead."""

from __future__ import annotations

from collections.abc import Mapping

from hub.channels.base import Channel, InboundEvent
from hub.settings import Settings


def acknowledgement(
    settings: Settings, channels: Mapping[str, Channel], event: InboundEvent
) -> str | None:
    """The channel's own `acknowledge` text, else `[leads] acknowledge`; None when there is
    none, or the event cannot be answered: a form (its page shows the text instead), something
    that opens no lead (an auto-reply, a bounce), our own outgoing message, or a channel
    that cannot send."""
    if event.direction != "in" or not event.opens_lead or event.channel_type == "form":
        return None
    channel = channels.get(event.channel)
    if channel is None or "outbound" not in channel.capabilities:
        return None
    own = settings.channels.get(event.channel)
    text = own.get("acknowledge") if own is not None else None
    return text or settings.leads.acknowledge


def form_acknowledgement(settings: Settings, form_id: str) -> str | None:
    form = settings.forms.get(form_id)
    return (form.acknowledge if form is not None else None) or settings.leads.acknowledge
