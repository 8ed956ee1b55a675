"""Contacts as the API shows them, with their identities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.leads.identity import identities_by_kind
from hub.models import Contact, Identity


def contact_to_dict(contact: Contact, identities: list[Identity]) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        **identities_by_kind(identities),
        "tags": list(contact.tags or []),
        "custom_fields": dict(contact.custom_fields or {}),
        "company": contact.company,
        "merged_into_id": contact.merged_into_id,
        "created_at": contact.created_at.isoformat(),
    }


async def contacts_to_dicts(
    session: AsyncSession, contacts: Sequence[Contact]
) -> list[dict[str, Any]]:
    """Serialise a page of contacts with one identity query, not one per contact."""
    ids = [c.id for c in contacts]
    by_contact: dict[int, list[Identity]] = {i: [] for i in ids}
    if ids:
        for identity in await session.scalars(select(Identity).where(Identity.contact_id.in_(ids))):
            by_contact[identity.contact_id].append(identity)
    return [contact_to_dict(c, by_contact[c.id]) for c in contacts]
