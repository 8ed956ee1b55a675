"""Leads: one open lead per contact, opened by the first inbound interest with its source."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select

from hub.channels.base import InboundEvent
from hub.models import LEADS, Lead, utcnow

UTM_FIELDS = ("source", "medium", "campaign", "term", "content")
OPEN_LEAD = select(LEADS.c.id).where(
    LEADS.c.contact_id == bindparam("contact_id"), LEADS.c.status == "open"
)
INSERT_LEAD = insert(LEADS).returning(*LEADS.c)


def open_lead_id(conn: Connection, contact_id: int) -> int | None:
    return conn.scalar(OPEN_LEAD, {"contact_id": contact_id})


def open_or_join_lead(
    conn: Connection,
    contact_id: int,
    event: InboundEvent,
    item_id: int | None,
    new_contact: bool = False,
) -> tuple[int, Row[Any] | None]:
    """The contact's open lead id, and the new lead's row when this event opened it.

    A concurrent transaction opening a lead for the same contact loses on the partial unique
    index and the whole ingest is retried, finding this lead.
    """
    lead_id = None if new_contact else open_lead_id(conn, contact_id)
    if lead_id is not None:
        return lead_id, None
    now = utcnow()
    values = {
        "contact_id": contact_id,
        "source": event.source or event.channel_type,
        "channel": event.channel,
        "form_id": event.form_id,
        "dialled_number": event.meta.get("dialled_number"),
        "first_item_id": item_id,
        "status": "open",
        # hub.leads.pipelines.with_pipeline puts the form's or channel's pipeline here
        "stage": event.meta.get("lead_stage") or "new",
        "pipeline": event.meta.get("lead_pipeline") or "default",
        "created_at": now,
        "updated_at": now,
        **{f"utm_{k}": (event.utm.get(k) or None) for k in UTM_FIELDS},
    }
    row = conn.execute(INSERT_LEAD, values).one()
    return int(row.id), row


def lead_to_dict(lead: Lead | Row[Any]) -> dict[str, Any]:
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
