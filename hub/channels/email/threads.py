"""Mail threading: which conversation a mail belongs to, by In-Reply-To/References, the reply
address token (support+<token>@domain), then the same subject from the same person within 30
days; and the headers our own replies carry so the customer's client threads them too."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select

from hub.channels.email.tables import EMAIL_MESSAGES
from hub.models import utcnow
from hub.sql import insert_ignore

SUBJECT_WINDOW = timedelta(days=30)
# Reply and forward prefixes as clients write them: English, German, Russian, Uzbek, Outlook's
# localised ones, with counters ("Re[2]:") and mailing-list tags.
PREFIX_RE = re.compile(
    r"^\s*((re|fw|fwd|aw|wg|sv|vs|tr|rif|ответ|отв|пересл|пересылка|javob|jv)"
    r"\s*(\[\d+\]|\(\d+\))?\s*:|\[[^\]]{1,40}\])\s*",
    re.IGNORECASE,
)
TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")
# Our own Message-IDs: <{thread token}.{item id}.{channel}@{domain}>
OWN_ID_RE = re.compile(r"^<([0-9a-f]{16})\.\d+\.[A-Za-z0-9_-]+@[^>]+>$")

THREAD_OF_IDS = (
    select(EMAIL_MESSAGES.c.thread_key)
    .where(
        EMAIL_MESSAGES.c.channel == bindparam("channel"),
        EMAIL_MESSAGES.c.message_id.in_(bindparam("ids", expanding=True)),
    )
    .order_by(EMAIL_MESSAGES.c.id.desc())
    .limit(1)
)
THREAD_OF_SUBJECT = (
    select(EMAIL_MESSAGES.c.thread_key)
    .where(
        EMAIL_MESSAGES.c.channel == bindparam("channel"),
        EMAIL_MESSAGES.c.party == bindparam("party"),
        EMAIL_MESSAGES.c.subject_key == bindparam("subject_key"),
        EMAIL_MESSAGES.c.created_at >= bindparam("since"),
    )
    .order_by(EMAIL_MESSAGES.c.id.desc())
    .limit(1)
)
THREAD_MESSAGES = (
    select(
        EMAIL_MESSAGES.c.message_id,
        EMAIL_MESSAGES.c.direction,
        EMAIL_MESSAGES.c.party,
        EMAIL_MESSAGES.c.item_id,
    )
    .where(
        EMAIL_MESSAGES.c.channel == bindparam("channel"),
        EMAIL_MESSAGES.c.thread_key == bindparam("thread_key"),
    )
    .order_by(EMAIL_MESSAGES.c.id)
)


def subject_key(subject: str) -> str:
    """The subject without Re:/Fwd:/AW:/Ответ: prefixes (repeated), case and spacing."""
    text = subject
    while True:
        stripped = PREFIX_RE.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.split()).casefold()[:200]


def new_thread_key(channel: str, seed: str) -> str:
    """A thread's key, derived from its first mail, so re-reading that mail finds the same."""
    return hashlib.sha256(f"{channel}\n{seed}".encode()).hexdigest()[:16]


def own_message_id(thread_key: str, item_id: int, channel: str, domain: str) -> str:
    """Deterministic per outbound item: a retried send carries the same Message-ID."""
    return f"<{thread_key}.{item_id}.{channel}@{domain}>"


def plus_address(address: str, thread_key: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local}+{thread_key}@{domain}"


def token_of_address(ours: str, recipients: Iterable[str]) -> str | None:
    """The thread token of a reply sent to support+<token>@domain (our address with a tag)."""
    local, _, domain = ours.lower().partition("@")
    for recipient in recipients:
        r_local, _, r_domain = recipient.lower().partition("@")
        if r_domain == domain and r_local.startswith(f"{local}+"):
            token = r_local[len(local) + 1 :]
            if TOKEN_RE.match(token):
                return token
    return None


@dataclass(frozen=True)
class MailKeys:
    """What threading looks at in one inbound mail."""

    channel: str
    message_id: str | None
    sender: str
    subject: str
    referenced: tuple[str, ...]  # In-Reply-To first, then References newest first
    recipients: tuple[str, ...]
    seed: str  # the dedupe key: a new thread's key derives from it


def find_thread(conn: Connection, keys: MailKeys, ours: str) -> tuple[str, str]:
    """(thread key, how it was found: "references" | "address" | "subject" | "new")."""
    referenced = [r[:500] for r in keys.referenced]
    for ref in referenced:
        own = OWN_ID_RE.match(ref)
        if own:
            return own.group(1), "references"
    if referenced:
        found = conn.scalar(THREAD_OF_IDS, {"channel": keys.channel, "ids": referenced})
        if found:
            return str(found), "references"
    token = token_of_address(ours, keys.recipients)
    if token is not None:
        return token, "address"
    key = subject_key(keys.subject)
    if key:
        found = conn.scalar(
            THREAD_OF_SUBJECT,
            {
                "channel": keys.channel,
                "party": keys.sender,
                "subject_key": key,
                "since": utcnow() - SUBJECT_WINDOW,
            },
        )
        if found:
            return str(found), "subject"
    return new_thread_key(keys.channel, keys.seed), "new"


def record_message(
    conn: Connection,
    *,
    channel: str,
    message_id: str,
    thread_key: str,
    direction: str,
    party: str,
    subject: str,
    item_id: int | None,
) -> None:
    """Remember a Message-ID and its thread; a mail read twice is remembered once."""
    insert_ignore(
        conn,
        EMAIL_MESSAGES,
        {
            "channel": channel,
            "message_id": message_id[:500],
            "thread_key": thread_key,
            "direction": direction,
            "party": party[:254],
            "subject_key": subject_key(subject),
            "item_id": item_id,
            "created_at": utcnow(),
        },
        ["channel", "message_id"],
    )


def thread_messages(conn: Connection, channel: str, thread_key: str) -> list[Any]:
    return list(conn.execute(THREAD_MESSAGES, {"channel": channel, "thread_key": thread_key}))
