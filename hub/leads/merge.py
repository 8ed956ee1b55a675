"""Merging two contacts into one: everything moves, one open lead stays, the merge is audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.audit import record
from hub.leads.leads import lead_to_dict
from hub.models import (
    Contact,
    Conversation,
    DuplicateSuggestion,
    Identity,
    InboundReceipt,
    Lead,
    Reminder,
    TimelineItem,
)


class MergeError(ValueError):
    """The merge cannot be done as asked; the message says why."""


async def merge_contacts(
    session: AsyncSession,
    keep_id: int,
    other_id: int,
    *,
    user_id: int | None,
    ip: str | None,
    reason: str = "operator",
) -> Contact:
    """Move the other contact's identities, conversations, items, leads and reminders to the
    kept one. When both have an open lead the older stays open; the other's reminders move to it
    and the newer lead is removed (recorded in the audit entry), so one person has one lead."""
    if keep_id == other_id:
        raise MergeError("other_id: a contact cannot be merged into itself")
    keep = await session.get(Contact, keep_id, with_for_update=True)
    other = await session.get(Contact, other_id, with_for_update=True)
    if keep is None or other is None:
        raise LookupError("contact not found")
    if keep.merged_into_id is not None or other.merged_into_id is not None:
        raise MergeError("other_id: one of the contacts was already merged into another")

    removed_lead: dict[str, Any] | None = None
    open_leads = list(
        await session.scalars(
            select(Lead)
            .where(Lead.contact_id.in_((keep_id, other_id)), Lead.status == "open")
            .order_by(Lead.created_at, Lead.id)
        )
    )
    if len(open_leads) == 2:
        kept_lead, extra = open_leads
        await session.execute(
            update(Reminder).where(Reminder.lead_id == extra.id).values(lead_id=kept_lead.id)
        )
        await session.execute(
            update(InboundReceipt)
            .where(InboundReceipt.lead_id == extra.id)
            .values(lead_id=kept_lead.id)
        )
        removed_lead = lead_to_dict(extra)
        await session.delete(extra)
        await session.flush()
        if kept_lead.contact_id != keep_id:
            kept_lead.contact_id = keep_id

    for model in (Identity, Conversation, TimelineItem, Lead, Reminder):
        await session.execute(
            update(model).where(model.contact_id == other_id).values(contact_id=keep_id)
        )
    await session.execute(
        update(InboundReceipt)
        .where(InboundReceipt.contact_id == other_id)
        .values(contact_id=keep_id)
    )
    await session.execute(
        delete(DuplicateSuggestion).where(
            or_(
                (DuplicateSuggestion.contact_id == min(keep_id, other_id))
                & (DuplicateSuggestion.other_id == max(keep_id, other_id)),
            )
        )
    )
    # Suggestions naming the merged contact now name the kept one (or vanish if they pair it
    # with itself); the unique pair constraint is respected by deleting collisions first.
    for suggestion in list(
        await session.scalars(
            select(DuplicateSuggestion).where(
                or_(
                    DuplicateSuggestion.contact_id == other_id,
                    DuplicateSuggestion.other_id == other_id,
                )
            )
        )
    ):
        third = suggestion.other_id if suggestion.contact_id == other_id else suggestion.contact_id
        await session.delete(suggestion)
        await session.flush()
        low, high = sorted((keep_id, third))
        exists = await session.scalar(
            select(DuplicateSuggestion.id).where(
                DuplicateSuggestion.contact_id == low, DuplicateSuggestion.other_id == high
            )
        )
        if exists is None and low != high:
            session.add(
                DuplicateSuggestion(
                    contact_id=low,
                    other_id=high,
                    reason=suggestion.reason,
                    status=suggestion.status,
                )
            )

    keep.name = keep.name or other.name
    keep.company = keep.company or other.company
    keep.tags = sorted(set(keep.tags or []) | set(other.tags or []))
    keep.custom_fields = {**(other.custom_fields or {}), **(keep.custom_fields or {})}
    other.merged_into_id = keep_id
    await session.flush()
    await record(
        session,
        "contact.merge",
        user_id=user_id,
        ip=ip,
        target_type="contact",
        target_id=keep_id,
        meta={"merged_id": other_id, "reason": reason, "removed_lead": removed_lead},
    )
    return keep
