"""The audit log: who did what to which record, from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.models import AuditEntry


async def record(
    session: AsyncSession,
    action: str,
    *,
    user_id: int | None,
    ip: str | None,
    target_type: str | None = None,
    target_id: int | str | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            user_id=user_id,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            ip=ip,
            meta=meta or {},
        )
    )
    await session.flush()


def audit_to_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "user_id": entry.user_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "ip": entry.ip,
        "meta": entry.meta,
        "created_at": entry.created_at.isoformat(),
    }
