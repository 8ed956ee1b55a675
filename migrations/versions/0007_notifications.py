"""Reminder notifications and follow-ups (issue 8): where users want reminders, the outbox of
notification messages, and what kind of reminder each is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from hub.models import Id, UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reminders") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="callback")
        )
    op.create_table(
        "notification_prefs",
        sa.Column("user_id", Id, nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("telegram_chat_id", sa.String(32), nullable=True),
        sa.Column("telegram_username", sa.String(64), nullable=True),
        sa.Column("link_code", sa.String(64), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_prefs_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notification_prefs")),
        sa.UniqueConstraint("link_code", name=op.f("uq_notification_prefs_link_code")),
        sa.UniqueConstraint(
            "telegram_chat_id", name=op.f("uq_notification_prefs_telegram_chat_id")
        ),
    )
    op.create_table(
        "notifications",
        sa.Column("id", Id, nullable=False),
        sa.Column("reminder_id", Id, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("address", sa.String(254), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["reminders.id"],
            name=op.f("fk_notifications_reminder_id_reminders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "reminder_id",
            "user_id",
            "kind",
            "due_at",
            name=op.f("uq_notifications_reminder_id"),
        ),
    )
    op.create_index(
        "ix_notifications_unsent",
        "notifications",
        ["created_at"],
        sqlite_where=sa.text("status IN ('pending', 'sending')"),
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_unsent", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_prefs")
    with op.batch_alter_table("reminders") as batch:
        batch.drop_column("kind")
