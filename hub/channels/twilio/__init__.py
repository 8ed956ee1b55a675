"""Twilio: SMS and WhatsApp messages in and out, with delivery status callbacks."""

from hub.channels.twilio.channel import Twilio

__all__ = ["Twilio"]
