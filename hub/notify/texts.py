"""What a reminder notification says, the same on every carrier, and its buttons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.channels.telegram.callbacks import callback_data

SNOOZE_MINUTES = 15
BUTTONS = "reminder"  # the Telegram button handler that owns reminder buttons


@dataclass(frozen=True)
class Button:
    label: str
    data: str | None = None  # callback_data of a hub button
    url: str | None = None


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    buttons: tuple[Button, ...] = ()


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def status_line(reminder: Any) -> str | None:
    if reminder.status == "done":
        return "✅ Done"
    if reminder.status == "cancelled":
        return "✖️ Cancelled"
    if reminder.status == "pending":
        return f"⏰ Snoozed until {_when(reminder.due_at)}"
    return None


def open_url(public_url: str | None, reminder: Any) -> str | None:
    """The inbox page of the contact; only with a public URL (Telegram refuses local ones)."""
    if not public_url or not public_url.startswith("https://"):
        return None
    return f"{public_url}/#contact/{reminder.contact_id}"


def render(
    kind: str,
    reminder: Any,
    contact: dict[str, Any] | None,
    lead: Any,
    assignee: Any,
    public_url: str | None,
) -> Rendered:
    """The notification for `kind` ("due" or "escalation") in the reminder's current state."""
    who = (contact or {}).get("name") or f"contact {reminder.contact_id}"
    phones = ", ".join((contact or {}).get("phones") or []) or "no phone"
    origin = ""
    if lead is not None:
        origin = f"Lead #{lead.id} from {lead.form_id or lead.channel or lead.source}"
        if lead.utm_source:
            origin += f" (utm_source {lead.utm_source})"
        if lead.dialled_number:
            origin += f", dialled {lead.dialled_number}"
    if kind == "escalation":
        owner = getattr(assignee, "name", None) or getattr(assignee, "email", None) or "nobody"
        subject = f"Overdue callback: {who}"
        due = _when(reminder.due_at)
        head = f"⚠️ Not called back: {who} ({phones}), due {due}, assigned to {owner}"
    else:
        subject = f"Call back {who}"
        head = f"📞 Call back {who}: {phones}\nDue {_when(reminder.due_at)}"
    lines = [head]
    if origin:
        lines.append(origin)
    if reminder.note:
        lines.append(f"Note: {reminder.note}")
    line = status_line(reminder) if reminder.status != "notified" else None
    if line is not None:
        lines.append(line)
    buttons: list[Button] = []
    if reminder.status == "notified":
        buttons = [
            Button("Done", data=callback_data(BUTTONS, str(reminder.id), "done")),
            Button(
                f"Snooze {SNOOZE_MINUTES} min",
                data=callback_data(BUTTONS, str(reminder.id), "snooze", str(SNOOZE_MINUTES)),
            ),
        ]
    url = open_url(public_url, reminder)
    if url is not None:
        buttons.append(Button("Open", url=url))
    return Rendered(subject=subject, text="\n".join(lines), buttons=tuple(buttons))
