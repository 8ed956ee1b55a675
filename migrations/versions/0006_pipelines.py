"""Pipelines, reports, import and export (issue 10): a covering index for the reports, and
indexes to find what a deactivated user holds open.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    (
        "ix_leads_report",
        "leads",
        [
            "created_at",
            "pipeline",
            "stage",
            "status",
            "source",
            "channel",
            "form_id",
            "dialled_number",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "assignee_id",
            "first_response_at",
        ],
    ),
    ("ix_leads_assignee_status", "leads", ["assignee_id", "status"]),
    ("ix_conversations_assignee_status", "conversations", ["assignee_id", "status"]),
    ("ix_reminders_assignee_status", "reminders", ["assignee_id", "status"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
