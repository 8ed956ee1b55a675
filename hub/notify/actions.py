"""What staff do from Telegram: press Done or Snooze under a reminder notice, or link their
account by sending "/start <code>". Parsed (pure) into events carrying a StaffAction, applied
here exactly once per Telegram update, answered in the webhook's own reply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from hub.channels.base import InboundEvent, ProviderAnswer, Sender
from hub.channels.telegram.callbacks import (
    ButtonPress,
    StartCommand,
    button_handler,
    start_handler,
)
from hub.db import Database
from hub.inbox.ingest import claim_receipt
from hub.inbox.live import LiveEvent
from hub.leads.reminders import (
    Due,
    ReminderError,
    mark_done,
    parse_minutes,
    reminder_to_dict,
    snooze,
)
from hub.models import Reminder
from hub.notify.prefs import LINK_PREFIX, LINK_RE, link_telegram, user_for_chat
from hub.notify.texts import BUTTONS, SNOOZE_MINUTES

log = structlog.get_logger(__name__)
STAFF_ACTION = "staff_action"


@dataclass(frozen=True)
class StaffAction:
    action: str  # reminder.done | reminder.snooze | link
    telegram_user_id: str
    chat_id: str | None
    username: str | None = None
    reminder_id: int | None = None
    code: str | None = None
    minutes: int | None = None  # of a snooze
    query_id: str | None = None  # a button press's callback_query id, to answer


@dataclass(frozen=True)
class ActionOutcome:
    answer: ProviderAnswer
    live: tuple[LiveEvent, ...] = ()
    dues: tuple[Due, ...] = ()
    refresh: int | None = None  # the reminder whose notices to rewrite
    duplicate: bool = False


def _event(channel: str, update_id: int, action: StaffAction) -> InboundEvent:
    return InboundEvent(
        channel=channel,
        channel_type="telegram",
        external_id=f"update:{update_id}",
        sender=Sender(telegram_id=action.telegram_user_id, telegram_username=action.username),
        kind="event",
        opens_lead=False,
        meta={STAFF_ACTION: action},
    )


@button_handler(BUTTONS)
def reminder_button(press: ButtonPress) -> list[InboundEvent]:
    """hub:reminder:<id>:done and hub:reminder:<id>:snooze:<minutes>."""
    match press.args:
        case (reminder_id, "done") if reminder_id.isdigit():
            minutes = None
        case (reminder_id, "snooze", raw) if reminder_id.isdigit() and raw.isdigit():
            minutes = int(raw)
        case _:
            return []
    action = StaffAction(
        action="reminder.done" if minutes is None else "reminder.snooze",
        telegram_user_id=press.user_id,
        chat_id=press.chat_id,
        username=press.username,
        reminder_id=int(reminder_id),
        minutes=minutes,
        query_id=press.query_id,
    )
    return [_event(press.channel, press.update_id, action)]


@start_handler(LINK_PREFIX)
def link_command(command: StartCommand) -> list[InboundEvent]:
    action = StaffAction(
        action="link",
        telegram_user_id=command.user_id,
        chat_id=command.chat_id,
        username=command.username,
        code=command.payload,
    )
    return [_event(command.channel, command.update_id, action)]


def staff_action_of(event: InboundEvent) -> StaffAction | None:
    action = event.meta.get(STAFF_ACTION)
    return action if isinstance(action, StaffAction) else None


def bot_reply(method: str, **params: Any) -> ProviderAnswer:
    """A Bot API call made in the webhook's answer (Telegram runs it; no request of ours)."""
    body = json.dumps({"method": method, **params}, ensure_ascii=False).encode()
    return ProviderAnswer(status=200, body=body, content_type="application/json")


def _answer(action: StaffAction, text: str) -> ProviderAnswer:
    if action.query_id is not None:
        return bot_reply("answerCallbackQuery", callback_query_id=action.query_id, text=text)
    return bot_reply("sendMessage", chat_id=action.chat_id, text=text)


async def _apply(session: AsyncSession, action: StaffAction) -> ActionOutcome:
    if action.action == "link":
        if action.code is None or not LINK_RE.match(action.code) or action.chat_id is None:
            return ActionOutcome(_answer(action, "This link code is not valid."))
        user = await link_telegram(session, action.code, action.chat_id, action.username)
        if user is None:
            text = "This link code is unknown or already used: open your hub profile for a new one."
            return ActionOutcome(_answer(action, text))
        log.info("telegram_linked", user_id=user.id)
        text = f"Linked to hub user {user.email}. Callback reminders will come here."
        return ActionOutcome(_answer(action, text))
    user = await user_for_chat(session, action.telegram_user_id)
    if user is None:
        return ActionOutcome(_answer(action, "This Telegram account is not linked to a hub user."))
    assert action.reminder_id is not None
    try:
        if action.action == "reminder.done":
            reminder: Reminder = await mark_done(session, action.reminder_id)
            text = "Marked done"
            dues: tuple[Due, ...] = ()
        else:
            minutes = parse_minutes(action.minutes or SNOOZE_MINUTES)
            reminder = await snooze(session, action.reminder_id, minutes)
            text = f"Snoozed for {minutes} minutes"
            dues = (Due(reminder.id, reminder.due_at),)
    except ReminderError as exc:
        return ActionOutcome(_answer(action, str(exc)), refresh=action.reminder_id)
    log.info("reminder_action", action=action.action, reminder_id=reminder.id, user_id=user.id)
    live = LiveEvent("reminder.updated", reminder_to_dict(reminder) | {"by_user_id": user.id})
    return ActionOutcome(_answer(action, text), (live,), dues, refresh=reminder.id)


async def apply_staff_action(db: Database, event: InboundEvent) -> ActionOutcome:
    """Apply the action once per Telegram update (its receipt is the dedupe key)."""
    action = staff_action_of(event)
    if action is None:
        raise ValueError(f"event {event.external_id!r} carries no {STAFF_ACTION}")
    async with db.write() as session:
        claimed = await session.run_sync(lambda s: claim_receipt(s.connection(), event))
        if claimed is None:
            return ActionOutcome(_answer(action, "Already done"), duplicate=True)
        return await _apply(session, action)
