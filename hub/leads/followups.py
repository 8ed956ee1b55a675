"""Follow-up rules and re-engagement: reminders the configuration asks for.

- `[[leads.follow_up]]`: a lead entering a stage (or the status won/lost) gets a reminder
  `after` later, made in the transaction that moved the lead.
- `[leads] reengage_after`: a won lead's contact with no activity for that long gets one
  reminder to get back in touch (once per lead), found by a periodic sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import structlog
from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import Database
from hub.leads.reminders import Due, pick_assignee
from hub.leads.stages import StageChange, on_stage_entered
from hub.models import ITEMS, LEADS, Reminder, _table, utcnow
from hub.settings import Settings

log = structlog.get_logger(__name__)
REMINDERS = _table(Reminder)
REENGAGE_BATCH = 500


@on_stage_entered
async def follow_up(
    session: AsyncSession, settings: Settings, change: StageChange
) -> Sequence[Due]:
    entered = set()
    if change.to_stage != change.from_stage:
        entered.add(change.to_stage)
    if change.to_status != change.from_status:
        entered.add(change.to_status)
    rules = [rule for rule in settings.leads.follow_up if rule.stage in entered]
    if not rules:
        return []
    lead_assignee = await session.scalar(
        select(LEADS.c.assignee_id).where(LEADS.c.id == change.lead_id)
    )
    assignee = lead_assignee or change.user_id
    if assignee is None:
        assignee = await session.run_sync(lambda s: pick_assignee(s.connection(), None))
    dues: list[Due] = []
    for rule in rules:
        reminder = Reminder(
            lead_id=change.lead_id,
            contact_id=change.contact_id,
            assignee_id=assignee,
            due_at=change.at + rule.after,
            status="pending",
            kind="follow_up",
            note=rule.note or f"Follow up: the lead entered {rule.stage}",
            created_at=change.at,
            updated_at=change.at,
        )
        session.add(reminder)
        await session.flush()
        log.info(
            "follow_up_planned", lead_id=change.lead_id, stage=rule.stage, reminder_id=reminder.id
        )
        dues.append(Due(reminder.id, reminder.due_at))
    return dues


async def reengage(db: Database, quiet_for: timedelta) -> list[Due]:
    """Won leads whose contact has been quiet `quiet_for` (no timeline item since), with no
    open lead now and no re-engagement reminder yet: one reminder each, due now."""
    now = utcnow()
    cutoff = now - quiet_for
    last_activity = (
        select(func.max(ITEMS.c.created_at))
        .where(ITEMS.c.contact_id == LEADS.c.contact_id)
        .scalar_subquery()
    )
    open_lead = LEADS.alias("open_lead")
    query = (
        select(LEADS.c.id, LEADS.c.contact_id, LEADS.c.assignee_id)
        .where(
            LEADS.c.status == "won",
            func.coalesce(LEADS.c.closed_at, LEADS.c.updated_at) <= cutoff,
            ~exists().where(
                and_(REMINDERS.c.lead_id == LEADS.c.id, REMINDERS.c.kind == "reengage")
            ),
            ~exists().where(
                and_(open_lead.c.contact_id == LEADS.c.contact_id, open_lead.c.status == "open")
            ),
            func.coalesce(last_activity, LEADS.c.created_at) <= cutoff,
        )
        .order_by(LEADS.c.id)
        .limit(REENGAGE_BATCH)
    )
    dues: list[Due] = []
    async with db.write() as session:
        for lead in (await session.execute(query)).all():
            reminder = Reminder(
                lead_id=lead.id,
                contact_id=lead.contact_id,
                assignee_id=lead.assignee_id,
                due_at=now,
                status="pending",
                kind="reengage",
                note=(
                    f"No contact for {quiet_for.days} days since this sale: "
                    "time to get back in touch"
                ),
                created_at=now,
                updated_at=now,
            )
            session.add(reminder)
            await session.flush()
            dues.append(Due(reminder.id, reminder.due_at))
    if dues:
        log.info("reengage_planned", count=len(dues))
    return dues
