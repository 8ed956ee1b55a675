"""Telephony: calls (issue 7).

No schema change: a call is a timeline item (kind "call", external_id the provider's call id,
unique per channel like every item), its events are inbound receipts, and the lead keeps the
dialled number in leads.dialled_number. The revision stays so the chain keeps its numbers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
