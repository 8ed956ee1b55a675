"""Presses of the hub's own inline buttons (callback_data "hub:<handler>:<args>"), by handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hub.channels.base import InboundEvent

PREFIX = "hub"
MAX_DATA_BYTES = 64  # Telegram's limit on callback_data


@dataclass(frozen=True)
class ButtonPress:
    """A callback_query from a button the hub sent, as its handler sees it."""

    channel: str
    update_id: int
    query_id: str
    handler: str
    args: tuple[str, ...]
    user_id: str
    username: str | None
    name: str | None
    chat_id: str | None  # the chat of the message the button was under, when still known
    message_id: int | None


# A handler is pure and synchronous, like parse(): it turns a press into events for ingest
# (external_id f"update:{press.update_id}", so a redelivered press is stored once), or []
# when the press only needs acknowledging.
ButtonHandler = Callable[[ButtonPress], list[InboundEvent]]
HANDLERS: dict[str, ButtonHandler] = {}


def button_handler(name: str) -> Callable[[ButtonHandler], ButtonHandler]:
    """Register the handler that owns buttons made with callback_data(name, ...)."""
    if not name or ":" in name:
        raise ValueError(f"button handler name {name!r}: non-empty, without ':'")

    def register(handler: ButtonHandler) -> ButtonHandler:
        if HANDLERS.setdefault(name, handler) is not handler:
            raise ValueError(f"button handler {name!r} is already registered")
        return handler

    return register


@dataclass(frozen=True)
class StartCommand:
    """ "/start <payload>" sent to the bot (what a t.me/<bot>?start=<payload> link sends)."""

    channel: str
    update_id: int
    payload: str
    user_id: str
    username: str | None
    name: str | None
    chat_id: str
    message_id: int


StartHandler = Callable[[StartCommand], list[InboundEvent]]
# By payload prefix: a /start whose payload starts with one is the hub's own business (a staff
# member linking their account), not a customer's message.
START_HANDLERS: dict[str, StartHandler] = {}


def start_handler(prefix: str) -> Callable[[StartHandler], StartHandler]:
    def register(handler: StartHandler) -> StartHandler:
        if START_HANDLERS.setdefault(prefix, handler) is not handler:
            raise ValueError(f"start handler {prefix!r} is already registered")
        return handler

    return register


def callback_data(handler: str, *args: str) -> str:
    """The callback_data of a hub button; Telegram keeps at most 64 bytes of it."""
    data = ":".join((PREFIX, handler, *args))
    if len(data.encode()) > MAX_DATA_BYTES:
        raise ValueError(f"callback_data {data!r} is longer than {MAX_DATA_BYTES} bytes")
    return data


def split_callback_data(data: str | None) -> tuple[str, tuple[str, ...]] | None:
    """(handler, args) of a hub button; None for data the hub did not make."""
    if not data:
        return None
    prefix, _, rest = data.partition(":")
    if prefix != PREFIX or not rest:
        return None
    handler, *args = rest.split(":")
    return handler, tuple(args)
