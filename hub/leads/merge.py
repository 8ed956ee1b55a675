"""Merging two contacts into one: everything moves, one open lead stays, the merge is audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from hub.leads.leads import lead_to_dict
from hub.models import (
    CONTACTS,
    CONVERSATIONS,
    IDENTITIES,
    ITEMS,
    LEADS,
    RECEIPTS,
    SUGGESTIONS,
    AuditEntry,
    Contact,
    Reminder,
    utcnow,
)
from hub.sql import insert_ignore


class MergeError(ValueError):
    """The merge cannot be done as asked; the message says why."""


def merge_into(
    conn: Connection,
    keep_id: int,
    other_id: int,
    *,
    user_id: int | None,
    ip: str | None,
    reason: str = "operator",
) -> None:
    """Move the other contact's identities, conversations, items, leads and reminders to the
    kept one. When both have an open lead the older stays open; the other's reminders move to it
    and the newer lead is removed (recorded in the audit entry), so one person has one lead.

    Core statements in the caller's transaction, so an operator's merge (the API) and a
    provider-proven one (inside ingest) are the same code."""
    if keep_id == other_id:
        raise MergeError("other_id: a contact cannot be merged into itself")
    rows = conn.execute(
        select(CONTACTS)
        .where(CONTACTS.c.id.in_((keep_id, other_id)))
        .order_by(CONTACTS.c.id)
        .with_for_update()
    ).all()
    by_id = {row.id: row for row in rows}
    keep, other = by_id.get(keep_id), by_id.get(other_id)
    if keep is None or other is None:
        raise LookupError("contact not found")
    if keep.merged_into_id is not None or other.merged_into_id is not None:
        raise MergeError("other_id: one of the contacts was already merged into another")

    removed_lead: dict[str, Any] | None = None
    open_leads = conn.execute(
        select(LEADS)
        .where(LEADS.c.contact_id.in_((keep_id, other_id)), LEADS.c.status == "open")
        .order_by(LEADS.c.created_at, LEADS.c.id)
    ).all()
    if len(open_leads) == 2:
        kept_lead, extra = open_leads
        conn.execute(
            update(Reminder).where(Reminder.lead_id == extra.id).values(lead_id=kept_lead.id)
        )
        conn.execute(
            update(RECEIPTS).where(RECEIPTS.c.lead_id == extra.id).values(lead_id=kept_lead.id)
        )
        removed_lead = lead_to_dict(extra)
        conn.execute(delete(LEADS).where(LEADS.c.id == extra.id))

    for table in (IDENTITIES, CONVERSATIONS, ITEMS, LEADS, RECEIPTS):
        conn.execute(update(table).where(table.c.contact_id == other_id).values(contact_id=keep_id))
    conn.execute(update(Reminder).where(Reminder.contact_id == other_id).values(contact_id=keep_id))
    low, high = sorted((keep_id, other_id))
    conn.execute(
        delete(SUGGESTIONS).where(SUGGESTIONS.c.contact_id == low, SUGGESTIONS.c.other_id == high)
    )
    # Suggestions naming the merged contact now name the kept one (or vanish if they pair it
    # with itself); the unique pair constraint is respected by deleting before re-inserting.
    naming_other = conn.execute(
        select(SUGGESTIONS).where(
            or_(SUGGESTIONS.c.contact_id == other_id, SUGGESTIONS.c.other_id == other_id)
        )
    ).all()
    for suggestion in naming_other:
        third = suggestion.other_id if suggestion.contact_id == other_id else suggestion.contact_id
        conn.execute(delete(SUGGESTIONS).where(SUGGESTIONS.c.id == suggestion.id))
        low, high = sorted((keep_id, third))
        if low != high:
            insert_ignore(
                conn,
                SUGGESTIONS,
                {
                    "contact_id": low,
                    "other_id": high,
                    "reason": suggestion.reason,
                    "status": suggestion.status,
                    "created_at": suggestion.created_at,
                },
                ["contact_id", "other_id"],
            )

    now = utcnow()
    conn.execute(
        update(CONTACTS)
        .where(CONTACTS.c.id == keep_id)
        .values(
            name=keep.name or other.name,
            company=keep.company or other.company,
            tags=sorted(set(keep.tags or []) | set(other.tags or [])),
            custom_fields={**(other.custom_fields or {}), **(keep.custom_fields or {})},
            updated_at=now,
        )
    )
    conn.execute(
        update(CONTACTS)
        .where(CONTACTS.c.id == other_id)
        .values(merged_into_id=keep_id, updated_at=now)
    )
    conn.execute(
        insert(AuditEntry).values(
            user_id=user_id,
            action="contact.merge",
            target_type="contact",
            target_id=str(keep_id),
            ip=ip,
            meta={"merged_id": other_id, "reason": reason, "removed_lead": removed_lead},
            created_at=now,
        )
    )


async def merge_contacts(
    session: AsyncSession,
    keep_id: int,
    other_id: int,
    *,
    user_id: int | None,
    ip: str | None,
    reason: str = "operator",
) -> Contact:
    """merge_into in the session's transaction; the kept contact, as it is now."""

    def run(sync_session: Session) -> None:
        merge_into(
            sync_session.connection(), keep_id, other_id, user_id=user_id, ip=ip, reason=reason
        )

    await session.run_sync(run)
    # The statements bypassed the unit of work: reload rather than trust the identity map.
    return await session.get_one(Contact, keep_id, populate_existing=True)
