"""E-mail channel: mailbox cursors (issue 6).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mailbox_states",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("folder", sa.String(length=200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("last_ok_at", hub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failing_since", hub.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("updated_at", hub.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_states")),
        sa.UniqueConstraint("channel", name=op.f("uq_mailbox_states_channel")),
    )
    op.create_table(
        "email_messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=500), nullable=False),
        sa.Column("thread_key", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("party", sa.String(length=254), nullable=False),
        sa.Column("subject_key", sa.String(length=200), nullable=False),
        sa.Column("item_id", ID, nullable=True),
        sa.Column("created_at", hub.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_messages")),
        sa.UniqueConstraint("channel", "message_id", name=op.f("uq_email_messages_channel")),
    )
    op.create_index(
        "ix_email_messages_party_subject",
        "email_messages",
        ["channel", "party", "subject_key", "created_at"],
    )
    op.create_table(
        "rejected_mails",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", hub.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_mails")),
        sa.UniqueConstraint(
            "channel", "uidvalidity", "uid", name=op.f("uq_rejected_mails_channel")
        ),
    )


def downgrade() -> None:
    op.drop_table("rejected_mails")
    op.drop_index("ix_email_messages_party_subject", table_name="email_messages")
    op.drop_table("email_messages")
    op.drop_table("mailbox_states")
