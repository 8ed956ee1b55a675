"""Role checks for the operator API: a denied action is a 403 with the reason, and audited."""

from __future__ import annotations

import json

from aiohttp import web

from hub.auth.audit import record
from hub.auth.users import at_least
from hub.models import User
from webhooks.api import current_user
from webhooks.context import RUNTIME
from webhooks.responses import client_ip


class Forbidden(web.HTTPForbidden):
    def __init__(self, reason: str) -> None:
        super().__init__(text=json.dumps({"error": reason}), content_type="application/json")


async def require_role(
    request: web.Request,
    role: str,
    action: str,
    *,
    target_type: str | None = None,
    target_id: int | str | None = None,
) -> User:
    """The current user when their role is at least `role`; otherwise the attempt is written to
    the audit log (action "<action>.denied", with the IP) and a 403 names the role needed."""
    user = current_user(request)
    if at_least(user, role):
        return user
    async with request.app[RUNTIME].db.write() as session:
        await record(
            session,
            f"{action}.denied",
            user_id=user.id,
            ip=client_ip(request),
            target_type=target_type,
            target_id=target_id,
            meta={"role": user.role, "needed": role},
        )
    raise Forbidden(f"{action}: needs the {role} role; you are {user.role}")
