"""Moving a lead through its pipeline: stage, won/lost, assignee; each change on the timeline.

Code that reacts to a lead entering a stage (follow-up reminders) registers a hook with
`on_stage_entered`; hooks run inside the same transaction as the change and hand back the
reminders to queue once it commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.inbox.live import LiveEvent
from hub.inbox.timeline import item_to_dict
from hub.leads.leads import lead_to_dict
from hub.leads.pipelines import pipeline_named
from hub.leads.reminders import Due
from hub.models import Contact, Conversation, Lead, TimelineItem, User, utcnow
from hub.settings import Settings

log = structlog.get_logger(__name__)
STATUSES = ("open", "won", "lost")
FIELDS = ("stage", "status", "lost_reason", "assignee_id")
CUSTOMER_TAG = "customer"


class LeadChangeError(ValueError):
    """A change that cannot be applied; the message names the field and what is allowed."""

    def __init__(self, reason: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class StageChange:
    """A lead entered a stage or a status (won, lost, reopened), by whom and when."""

    lead_id: int
    contact_id: int
    pipeline: str
    from_stage: str
    to_stage: str
    from_status: str
    to_status: str
    user_id: int | None
    at: datetime


StageHook = Callable[[AsyncSession, Settings, StageChange], Awaitable[Sequence[Due]]]
STAGE_HOOKS: list[StageHook] = []


def on_stage_entered(hook: StageHook) -> StageHook:
    """Register `hook(session, settings, change)`, run for every stage or status change inside
    its transaction; the reminders it returns are queued after the commit. Usable as a
    decorator; registering the same function twice runs it once."""
    if hook not in STAGE_HOOKS:
        STAGE_HOOKS.append(hook)
    return hook


@dataclass(frozen=True)
class LeadUpdate:
    lead: dict[str, Any]
    live: tuple[LiveEvent, ...] = ()
    dues: tuple[Due, ...] = ()
    changes: dict[str, list[Any]] = field(default_factory=dict)


async def _check_assignee(session: AsyncSession, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LeadChangeError("assignee_id: must be a user id (an integer) or null", "assignee_id")
    user = await session.get(User, value)
    if user is None or not user.active:
        raise LeadChangeError(f"assignee_id: no active user {value}", "assignee_id")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LeadChangeError(f"{name}: must be a non-empty string", name)
    return value.strip()


async def _timeline_place(session: AsyncSession, lead: Lead) -> tuple[int | None, str, str]:
    """Where the change shows: the conversation the lead came from, else the contact's latest."""
    conversation_id = None
    if lead.first_item_id is not None:
        conversation_id = await session.scalar(
            select(TimelineItem.conversation_id).where(TimelineItem.id == lead.first_item_id)
        )
    if conversation_id is None:
        conversation_id = await session.scalar(
            select(Conversation.id)
            .where(Conversation.contact_id == lead.contact_id)
            .order_by(Conversation.last_message_at.desc())
            .limit(1)
        )
    if conversation_id is None:
        return None, lead.channel or "leads", "system"
    conversation = await session.get(Conversation, conversation_id)
    assert conversation is not None
    return conversation.id, conversation.channel, conversation.channel_type


def _describe(changes: dict[str, list[Any]], names: dict[int, str]) -> str:
    parts = []
    if "stage" in changes:
        parts.append(f"stage {changes['stage'][0]} → {changes['stage'][1]}")
    if "status" in changes:
        old, new = changes["status"]
        parts.append({"won": "won", "lost": "lost", "open": f"reopened (was {old})"}[new])
    if "lost_reason" in changes and changes["lost_reason"][1]:
        parts.append(f"reason: {changes['lost_reason'][1]}")
    if "assignee_id" in changes:
        new_id = changes["assignee_id"][1]
        parts.append(f"assigned to {names.get(new_id, new_id)}" if new_id else "unassigned")
    return "Lead " + "; ".join(parts)


async def update_lead(
    session: AsyncSession, settings: Settings, lead_id: int, data: dict[str, Any], user: User
) -> LeadUpdate:
    """Apply PATCH /api/leads/{id}: stage (of the lead's pipeline), status open/won/lost,
    lost_reason (required for lost, one of the pipeline's reasons), assignee_id. A change is
    recorded as a timeline event with who and when; won tags the contact `customer`."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise LeadChangeError(
            f"{unknown[0]}: not a field you can change; one of {', '.join(FIELDS)}", unknown[0]
        )
    if not data:
        raise LeadChangeError(f"nothing to change: send one of {', '.join(FIELDS)}")
    lead = await session.get(Lead, lead_id, with_for_update=True)
    if lead is None:
        raise LeadChangeError(f"lead {lead_id} not found", status=404)
    pipeline = pipeline_named(settings, lead.pipeline)
    before = {"stage": lead.stage, "status": lead.status}
    status = lead.status
    if "status" in data:
        status = data["status"]
        if status not in STATUSES:
            raise LeadChangeError(f"status: one of {', '.join(STATUSES)}, got {status!r}", "status")
    stage = lead.stage
    if "stage" in data:
        stage = _text("stage", data["stage"])
        if stage not in pipeline.stages:
            if stage in ("won", "lost"):
                raise LeadChangeError(
                    f'stage: {stage!r} is a status: send {{"status": "{stage}"}}', "stage"
                )
            raise LeadChangeError(
                f"stage: {stage!r} is not a stage of pipeline {pipeline.name!r}; one of "
                f"{', '.join(pipeline.stages) or '(the pipeline is no longer configured)'}",
                "stage",
            )
        if status != "open" and stage != lead.stage:
            raise LeadChangeError(
                f"stage: lead {lead.id} is {status}; reopen it (status open) to move its stage",
                "stage",
                status=409,
            )
    reason = lead.lost_reason if status == "lost" else None
    if "lost_reason" in data and data["lost_reason"] is not None:
        if status != "lost":
            raise LeadChangeError(
                'lost_reason: only for a lost lead; send it with {"status": "lost"}', "lost_reason"
            )
        reason = _text("lost_reason", data["lost_reason"])
    if status == "lost" and reason not in pipeline.lost_reasons:
        allowed = ", ".join(repr(r) for r in pipeline.lost_reasons)
        what = "required" if not reason else f"{reason!r} is not one of the reasons"
        raise LeadChangeError(
            f"lost_reason: {what} for a lost lead; one of {allowed}", "lost_reason"
        )
    if status == "open" and lead.status != "open":
        other = await session.scalar(
            select(Lead.id).where(
                Lead.contact_id == lead.contact_id, Lead.status == "open", Lead.id != lead.id
            )
        )
        if other is not None:
            raise LeadChangeError(
                f"status: contact {lead.contact_id} already has open lead {other}; "
                "close it before reopening this one",
                "status",
                status=409,
            )
    assignee = lead.assignee_id
    if "assignee_id" in data:
        assignee = await _check_assignee(session, data["assignee_id"])

    now = utcnow()
    changes: dict[str, list[Any]] = {}
    for name, new in (
        ("stage", stage),
        ("status", status),
        ("lost_reason", reason),
        ("assignee_id", assignee),
    ):
        old = getattr(lead, name)
        if old != new:
            changes[name] = [old, new]
            setattr(lead, name, new)
    if not changes:
        return LeadUpdate(lead=lead_to_dict(lead))
    if "status" in changes:
        lead.closed_at = None if status == "open" else now
    lead.updated_at = now
    if changes.get("status", [None, None])[1] == "won":
        contact = await session.get(Contact, lead.contact_id, with_for_update=True)
        if contact is not None and CUSTOMER_TAG not in (contact.tags or []):
            contact.tags = [*(contact.tags or []), CUSTOMER_TAG]
            contact.updated_at = now
    names = {user.id: user.name or user.email}
    if assignee is not None and assignee != user.id:
        assignee_user = await session.get(User, assignee)
        if assignee_user is not None:
            names[assignee] = assignee_user.name or assignee_user.email
    conversation_id, channel, channel_type = await _timeline_place(session, lead)
    item = TimelineItem(
        conversation_id=conversation_id,
        contact_id=lead.contact_id,
        channel=channel,
        channel_type=channel_type,
        direction="internal",
        kind="event",
        text=_describe(changes, names),
        status="received",
        author_id=user.id,
        meta={
            "event": "lead.updated",
            "lead_id": lead.id,
            "pipeline": lead.pipeline,
            "changes": changes,
            "by": {"id": user.id, "name": user.name or user.email},
        },
        created_at=now,
        updated_at=now,
    )
    session.add(item)
    await session.flush()
    dues: list[Due] = []
    if "stage" in changes or "status" in changes:
        change = StageChange(
            lead_id=lead.id,
            contact_id=lead.contact_id,
            pipeline=lead.pipeline,
            from_stage=before["stage"],
            to_stage=lead.stage,
            from_status=before["status"],
            to_status=lead.status,
            user_id=user.id,
            at=now,
        )
        for hook in STAGE_HOOKS:
            dues.extend(await hook(session, settings, change))
    log.info("lead_updated", lead_id=lead.id, fields=sorted(changes), user_id=user.id)
    body = lead_to_dict(lead)
    return LeadUpdate(
        lead=body,
        live=(LiveEvent("lead.updated", body), LiveEvent("message.created", item_to_dict(item))),
        dues=tuple(dues),
        changes=changes,
    )
