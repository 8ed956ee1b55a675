"""The explicit registry of channel types: adding a channel is one module and one line here."""

from __future__ import annotations

from hub.channels.base import Channel
from hub.channels.email import Email
from hub.channels.pbx import Pbx
from hub.channels.telegram import Telegram
from hub.channels.twilio import Twilio
from hub.channels.webform import WebForm
from hub.settings import ChannelConfig, Settings

CHANNEL_TYPES: dict[str, type[Channel]] = {
    WebForm.type: WebForm,
    Telegram.type: Telegram,
    Twilio.type: Twilio,
    Pbx.type: Pbx,
    Email.type: Email,
}


def build_channels(settings: Settings) -> dict[str, Channel]:
    """Every configured channel by name, forms included (as channel type "form")."""
    channels: dict[str, Channel] = {}
    for name, config in settings.channels.items():
        channels[name] = CHANNEL_TYPES[config.type](config, settings)
    return channels


def build_forms(settings: Settings) -> dict[str, WebForm]:
    return {
        form_id: WebForm(ChannelConfig(name=form_id, type=WebForm.type, values={}), settings)
        for form_id in settings.forms
    }
