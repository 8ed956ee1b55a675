"""The e-mail channel: IMAP in (polled by the worker), SMTP out, threading that holds."""

from hub.channels.email.channel import Email

__all__ = ["Email"]
