"""The database schema: contacts and identities, conversations and timeline, leads, users, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite keeps no zone, so it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: Json}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(20))  # operator | manager | admin
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    manager_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex, never the token
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), default=None)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32), default=None)
    target_id: Mapped[str | None] = mapped_column(String(64), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    company: Mapped[str | None] = mapped_column(String(200), default=None)
    tags: Mapped[list[str]] = mapped_column(Json, default=list)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A merged contact stays as a pointer so links to it still resolve.
    merged_into_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("contacts.id"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Identity(Base):
    """A way to reach a person: phone (E.164), email (lower-case), telegram (user id)."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(254))
    raw: Mapped[str | None] = mapped_column(String(254), default=None)  # as first written
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DuplicateSuggestion(Base):
    """Two contacts one event claimed are the same person; an operator decides."""

    __tablename__ = "duplicate_suggestions"
    __table_args__ = (UniqueConstraint("contact_id", "other_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    other_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | merged | dismissed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_contact_channel", "contact_id", "channel"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(64))
    channel_type: Mapped[str] = mapped_column(String(16))
    thread_key: Mapped[str | None] = mapped_column(String(254), default=None)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | pending | closed
    assignee_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), default=None)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TimelineItem(Base):
    __tablename__ = "timeline_items"
    __table_args__ = (
        UniqueConstraint("channel_type", "channel", "external_id"),
        Index("ix_timeline_items_contact_created", "contact_id", "created_at"),
        Index("ix_timeline_items_conversation_id", "conversation_id", "id"),
        # The sweep that re-queues replies whose job was lost reads only these few rows.
        Index(
            "ix_timeline_items_queued",
            "created_at",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("conversations.id", ondelete="CASCADE"), default=None
    )
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(64))
    channel_type: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))  # in | out | internal
    kind: Mapped[str] = mapped_column(String(16))  # message | call | note | form | event
    text: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    status: Mapped[str] = mapped_column(String(16), default="received")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    author_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), default=None)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InboundReceipt(Base):
    """One row per provider event ever accepted: the dedupe key, checked before any side effect."""

    __tablename__ = "inbound_receipts"
    __table_args__ = (UniqueConstraint("channel_type", "channel", "external_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel_type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200))
    item_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("timeline_items.id", ondelete="SET NULL"), default=None
    )
    lead_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("leads.id", ondelete="SET NULL"), default=None
    )
    contact_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        # One open lead per contact, enforced by the database on both engines.
        Index(
            "uq_leads_open_per_contact",
            "contact_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_leads_created_at", "created_at"),
        Index("ix_leads_source", "source", "utm_source"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(64), default=None)
    form_id: Mapped[str | None] = mapped_column(String(64), default=None)
    dialled_number: Mapped[str | None] = mapped_column(String(32), default=None)
    utm_source: Mapped[str | None] = mapped_column(String(200), default=None)
    utm_medium: Mapped[str | None] = mapped_column(String(200), default=None)
    utm_campaign: Mapped[str | None] = mapped_column(String(200), default=None)
    utm_term: Mapped[str | None] = mapped_column(String(200), default=None)
    utm_content: Mapped[str | None] = mapped_column(String(200), default=None)
    pipeline: Mapped[str] = mapped_column(String(64), default="default")
    stage: Mapped[str] = mapped_column(String(64), default="new")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | won | lost
    lost_reason: Mapped[str | None] = mapped_column(Text, default=None)
    assignee_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), default=None)
    first_item_id: Mapped[int | None] = mapped_column(Id, default=None)
    first_response_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Reminder(Base):
    __tablename__ = "reminders"
    __table_args__ = (Index("ix_reminders_status_due", "status", "due_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    lead_id: Mapped[int] = mapped_column(Id, ForeignKey("leads.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    assignee_id: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"), default=None)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # callback (a new lead) | missed_call | follow_up (a stage rule) | reengage | manual
    kind: Mapped[str] = mapped_column(String(16), default="callback", server_default="callback")
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    escalated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- e-mail channel (issue 6) ---


class MailboxState(Base):
    """Where polling an e-mail channel's mailbox stands: the IMAP cursor (UIDVALIDITY + the last
    UID committed) and how the last attempt went, which /healthz shows."""

    __tablename__ = "mailbox_states"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), unique=True)
    folder: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_ok_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EmailMessage(Base):
    """Every mail in or out by its Message-ID, with the thread it belongs to: replies find
    their conversation through In-Reply-To/References, or the same subject from the same person."""

    __tablename__ = "email_messages"
    __table_args__ = (
        UniqueConstraint("channel", "message_id"),
        Index("ix_email_messages_party_subject", "channel", "party", "subject_key", "created_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(500))
    thread_key: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    party: Mapped[str] = mapped_column(String(254))  # the customer's address, either way
    subject_key: Mapped[str] = mapped_column(String(200))  # normalised: no Re:/Fwd:/Ответ:
    # No foreign key: the row outlives a deleted item, and recording a sent mail never fails.
    item_id: Mapped[int | None] = mapped_column(Id, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RejectedMail(Base):
    """A mail that could not be parsed: kept raw with the reason, and skipped, so it never
    blocks the mail behind it."""

    __tablename__ = "rejected_mails"
    __table_args__ = (UniqueConstraint("channel", "uidvalidity", "uid"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- telephony (issue 7) ---

# --- web inbox (issue 9) ---
# GET /api/audit filters by who acted and by what was acted on, newest first.
Index("ix_audit_log_user_id", AuditEntry.user_id, AuditEntry.id)
Index("ix_audit_log_target", AuditEntry.target_type, AuditEntry.target_id)

# --- pipelines and reports (issue 10) ---
# Reports read a period of leads: this index covers every column they group or measure, so a
# report scans index pages only (at 1M leads, several times faster than rows fetched by id).
Index(
    "ix_leads_report",
    Lead.created_at,
    Lead.pipeline,
    Lead.stage,
    Lead.status,
    Lead.source,
    Lead.channel,
    Lead.form_id,
    Lead.dialled_number,
    Lead.utm_source,
    Lead.utm_medium,
    Lead.utm_campaign,
    Lead.assignee_id,
    Lead.first_response_at,
)
# Deactivating a user finds what they hold open.
Index("ix_leads_assignee_status", Lead.assignee_id, Lead.status)
Index("ix_conversations_assignee_status", Conversation.assignee_id, Conversation.status)
Index("ix_reminders_assignee_status", Reminder.assignee_id, Reminder.status)

# --- notifications (issue 8) ---


class NotificationPrefs(Base):
    """Where a user wants reminders: the web inbox only, a Telegram DM, e-mail or SMS."""

    __tablename__ = "notification_prefs"
    user_id: Mapped[int] = mapped_column(
        Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    via: Mapped[str] = mapped_column(String(16), default="auto")  # auto|inbox|telegram|email|sms
    phone: Mapped[str | None] = mapped_column(String(32), default=None)  # E.164, for SMS
    telegram_chat_id: Mapped[str | None] = mapped_column(String(32), default=None, unique=True)
    telegram_username: Mapped[str | None] = mapped_column(String(64), default=None)
    # What the user sends to the bot as "/start <code>" to link their Telegram account.
    link_code: Mapped[str | None] = mapped_column(String(64), default=None, unique=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Notification(Base):
    """One message about a reminder to one user (the outbox): written in the transaction that
    fires or escalates the reminder, sent after commit, retried by the sweep until it is out."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("reminder_id", "user_id", "kind", "due_at"),
        Index(
            "ix_notifications_unsent",
            "created_at",
            sqlite_where=text("status IN ('pending', 'sending')"),
            postgresql_where=text("status IN ('pending', 'sending')"),
        ),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    reminder_id: Mapped[int] = mapped_column(Id, ForeignKey("reminders.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # due | escalation
    due_at: Mapped[datetime]
    via: Mapped[str] = mapped_column(String(16))  # inbox | telegram | email | sms
    channel: Mapped[str | None] = mapped_column(String(64), default=None)
    address: Mapped[str | None] = mapped_column(String(254), default=None)
    # pending -> sending (claimed by one sender) -> sent | failed; back to pending to retry
    status: Mapped[str] = mapped_column(String(16), default="pending")
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# Tables for Core statements on hot paths (the ingest pipeline runs for every inbound event).
CONTACTS = _table(Contact)
IDENTITIES = _table(Identity)
SUGGESTIONS = _table(DuplicateSuggestion)
CONVERSATIONS = _table(Conversation)
ITEMS = _table(TimelineItem)
RECEIPTS = _table(InboundReceipt)
LEADS = _table(Lead)
