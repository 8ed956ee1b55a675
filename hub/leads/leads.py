"""Leads: one open lead per contact, opened by the first inbound interest with its source."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.channels.base import InboundEvent
from hub.models import Lead

UTM_FIELDS = ("source", "medium", "campaign", "term", "content")


def open_lead(session: Session, contact_id: int) -> Lead | None:
    return session.scalar(select(Lead).where(Lead.contact_id == contact_id, Lead.status == "open"))


def open_or_join_lead(
    session: Session, contact_id: int, event: InboundEvent, item_id: int | None
) -> tuple[Lead, bool]:
    """The contact's open lead, or a new one from this event; True when it was created.

    A concurrent transaction opening a lead for the same contact loses on the partial unique
    index and the whole ingest is retried, finding this lead.
    """
    lead = open_lead(session, contact_id)
    if lead is not None:
        return lead, False
    utm = {f"utm_{k}": (event.utm.get(k) or None) for k in UTM_FIELDS}
    lead = Lead(
        contact_id=contact_id,
        source=event.source or event.channel_type,
        channel=event.channel,
        form_id=event.form_id,
        dialled_number=event.meta.get("dialled_number"),
        first_item_id=item_id,
        status="open",
        stage="new",
        **utm,
    )
    session.add(lead)
    session.flush()
    return lead, True


def lead_to_dict(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.id,
        "contact_id": lead.contact_id,
        "source": lead.source,
        "channel": lead.channel,
        "form_id": lead.form_id,
        "dialled_number": lead.dialled_number,
        "utm": {k: getattr(lead, f"utm_{k}") for k in UTM_FIELDS},
        "pipeline": lead.pipeline,
        "stage": lead.stage,
        "status": lead.status,
        "lost_reason": lead.lost_reason,
        "assignee_id": lead.assignee_id,
        "created_at": lead.created_at.isoformat(),
        "first_response_at": lead.first_response_at.isoformat() if lead.first_response_at else None,
    }
