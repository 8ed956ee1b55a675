"""Exports of contacts, leads and timeline items: read in keyset batches (constant memory, no
long-held transaction), each row as the API shows it and flattened for CSV."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select

from hub.db import Database
from hub.inbox.timeline import item_to_dict
from hub.leads.contacts import contacts_to_dicts
from hub.leads.leads import UTM_FIELDS, lead_to_dict
from hub.models import Contact, Lead, TimelineItem

BATCH = 1000
KINDS = ("contacts", "leads", "timeline")
MODELS: dict[str, Any] = {"contacts": Contact, "leads": Lead, "timeline": TimelineItem}
COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": (
        "id",
        "name",
        "company",
        "phones",
        "emails",
        "telegram",
        "tags",
        "custom_fields",
        "merged_into_id",
        "created_at",
    ),
    "leads": (
        "id",
        "contact_id",
        "source",
        "channel",
        "form_id",
        "dialled_number",
        *(f"utm_{k}" for k in UTM_FIELDS),
        "pipeline",
        "stage",
        "status",
        "lost_reason",
        "assignee_id",
        "created_at",
        "first_response_at",
    ),
    "timeline": (
        "id",
        "conversation_id",
        "contact_id",
        "channel",
        "channel_type",
        "direction",
        "kind",
        "text",
        "status",
        "author_id",
        "attachments",
        "meta",
        "created_at",
    ),
}


async def export_rows(db: Database, kind: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of rows, oldest first, in the API's shapes."""
    model = MODELS[kind]
    last = 0
    while True:
        async with db.read() as session:
            rows = list(
                await session.scalars(
                    select(model).where(model.id > last).order_by(model.id).limit(BATCH)
                )
            )
            if not rows:
                return
            if kind == "contacts":
                batch = await contacts_to_dicts(session, rows)
            elif kind == "leads":
                batch = [lead_to_dict(r) for r in rows]
            else:
                batch = [item_to_dict(r) for r in rows]
        last = rows[-1].id
        yield batch
        if len(rows) < BATCH:
            return


def _joined(values: list[Any], key: Callable[[Any], str] = str) -> str:
    return "; ".join(key(v) for v in values)


def flatten(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row for CSV: lists joined with "; ", objects as JSON."""
    if kind == "contacts":
        return row | {
            "phones": _joined(row["phones"]),
            "emails": _joined(row["emails"]),
            "telegram": _joined(row["telegram"], lambda t: t.get("username") or t["id"]),
            "tags": _joined(row["tags"]),
            "custom_fields": json.dumps(row["custom_fields"], ensure_ascii=False)
            if row["custom_fields"]
            else "",
        }
    if kind == "leads":
        return row | {f"utm_{k}": v for k, v in row["utm"].items()}
    return row | {
        "attachments": _joined(row["attachments"], lambda a: a.get("name") or ""),
        "meta": json.dumps(row["meta"], ensure_ascii=False, default=str) if row["meta"] else "",
    }
