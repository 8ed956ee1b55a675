"""User management for admins: list, create, change role/name/manager/password, revoke tokens.
A role or password change revokes the user's tokens; every change is audited with the IP."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.passwords import MIN_LENGTH, hash_password
from hub.auth.users import ROLES, UserError, create_user, user_to_dict
from hub.models import ApiToken, User, utcnow
from webhooks.api import (
    BadRequest,
    Conflict,
    NotFound,
    audit,
    int_param,
    keyset_by_id,
    page_limit,
    read_json,
    require_role,
    split_page,
)
from webhooks.context import RUNTIME
from webhooks.responses import error, json_response

USER_FIELDS = ("name", "role", "manager_id", "password")


def user_body(user: User) -> dict[str, Any]:
    return user_to_dict(user) | {"manager_id": user.manager_id}


async def list_users(request: web.Request) -> web.Response:
    """Any signed-in user sees the colleagues they can hand work to; ?role=&active=&manager_id=."""
    limit = page_limit(request)
    query = select(User)
    if role := request.query.get("role"):
        if role not in ROLES:
            raise BadRequest(f"role: one of {', '.join(ROLES)}", "role")
        query = query.where(User.role == role)
    if active := request.query.get("active"):
        if active not in ("true", "false"):
            raise BadRequest("active: true or false", "active")
        query = query.where(User.active.is_(active == "true"))
    if manager := request.query.get("manager_id"):
        query = query.where(User.manager_id == int_param(manager, "manager_id"))
    query = keyset_by_id(query, User, request).limit(limit + 1)
    async with request.app[RUNTIME].db.read() as session:
        page = split_page(list(await session.scalars(query)), limit, lambda u: [u.id])
    return json_response(
        {"items": [user_body(u) for u in page.rows], "next_cursor": page.next_cursor}
    )


def text_field(data: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 254:
        raise BadRequest(f"{key}: required, a non-empty string", key)
    return value


async def check_manager(session: AsyncSession, user_id: int | None, manager_id: Any) -> int | None:
    """manager_id must name an active manager or admin, and not make a loop of managers."""
    if manager_id is None:
        return None
    if isinstance(manager_id, bool) or not isinstance(manager_id, int):
        raise BadRequest("manager_id: a user id (an integer) or null", "manager_id")
    seen: set[int] = set()
    current: int | None = manager_id
    while current is not None and current not in seen:
        if current == user_id:
            raise BadRequest("manager_id: that would make a loop of managers", "manager_id")
        seen.add(current)
        current = await session.scalar(select(User.manager_id).where(User.id == current))
    manager = await session.get(User, manager_id)
    if manager is None or not manager.active or manager.role not in ("manager", "admin"):
        raise BadRequest(f"manager_id: no active manager or admin {manager_id}", "manager_id")
    return manager_id


async def post_user(request: web.Request) -> web.Response:
    """POST {"email", "password", "role", "name"?, "manager_id"?} -> 201 the user."""
    await require_role(request, "admin", "user.create", target_type="user")
    data = await read_json(request)
    if unknown := sorted(set(data) - {"email", "password", "role", "name", "manager_id"}):
        raise BadRequest(f"{unknown[0]}: unknown field", unknown[0])
    email = text_field(data, "email", required=True)
    password = text_field(data, "password", required=True)
    role = data.get("role")
    if role not in ROLES:
        raise BadRequest(f"role: one of {', '.join(ROLES)}", "role")
    name = text_field(data, "name") or ""
    assert email is not None and password is not None
    async with request.app[RUNTIME].db.write() as session:
        manager_id = await check_manager(session, None, data.get("manager_id"))
        try:
            user = await create_user(session, email, password, role, name[:200])
        except UserError as exc:
            field = str(exc).split(":")[0].lstrip("-")  # the CLI's "--email: ..." names the field
            message = str(exc).removeprefix("--")
            return error(409 if "already exists" in message else 400, message, field=field)
        user.manager_id = manager_id
        await session.flush()
        await audit(
            session,
            request,
            "user.create",
            target_type="user",
            target_id=user.id,
            meta={"email": user.email, "role": role, "manager_id": manager_id},
        )
        body = user_body(user)
    return json_response(body, status=201)


async def revoke_all(session: AsyncSession, user_id: int) -> int:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def patch_user(request: web.Request) -> web.Response:
    """PATCH {"name"?, "role"?, "manager_id"?, "password"?}. A role or password change signs the
    user out everywhere (their tokens are revoked). The last active admin keeps their role."""
    user_id = int_param(request.match_info["user_id"], "id")
    await require_role(request, "admin", "user.update", target_type="user", target_id=user_id)
    data = await read_json(request)
    if unknown := sorted(set(data) - set(USER_FIELDS)):
        hint = "; deactivate with POST /api/users/{id}/deactivate" if "active" in unknown else ""
        raise BadRequest(
            f"{unknown[0]}: not a field you can change; one of {', '.join(USER_FIELDS)}{hint}",
            unknown[0],
        )
    if not data:
        raise BadRequest(f"nothing to change: send any of {', '.join(USER_FIELDS)}")
    role = data.get("role")
    if "role" in data and role not in ROLES:
        raise BadRequest(f"role: one of {', '.join(ROLES)}", "role")
    password = text_field(data, "password") if "password" in data else None
    if password is not None and len(password) < MIN_LENGTH:
        raise BadRequest(f"password: at least {MIN_LENGTH} characters", "password")
    name = text_field(data, "name") if "name" in data else None
    async with request.app[RUNTIME].db.write() as session:
        user = await session.get(User, user_id, with_for_update=True)
        if user is None:
            raise NotFound(f"user {user_id}")
        if "manager_id" in data:
            user.manager_id = await check_manager(session, user.id, data["manager_id"])
        if name is not None:
            user.name = name.strip()[:200]
        revoked = 0
        if role is not None and role != user.role:
            if user.role == "admin" and user.active:
                admins = await session.scalar(
                    select(func.count())
                    .select_from(User)
                    .where(User.role == "admin", User.active.is_(True))
                )
                if (admins or 0) <= 1:
                    raise Conflict(  # rolls back the other changes too
                        "role: this is the last active admin; make someone else admin first",
                        field="role",
                    )
            await audit(
                session,
                request,
                "user.role_change",
                target_type="user",
                target_id=user.id,
                meta={"from": user.role, "to": role},
            )
            user.role = role
            revoked = await revoke_all(session, user.id)
        if password is not None:
            user.password_hash = hash_password(password)
            revoked = await revoke_all(session, user.id) or revoked
        await session.flush()
        await audit(
            session,
            request,
            "user.update",
            target_type="user",
            target_id=user.id,
            meta={"fields": sorted(data), "tokens_revoked": revoked},
        )
        body = user_body(user) | {"tokens_revoked": revoked}
    return json_response(body)


async def revoke_tokens(request: web.Request) -> web.Response:
    """DELETE /api/users/{id}/tokens: sign the user out of every browser and script."""
    user_id = int_param(request.match_info["user_id"], "id")
    await require_role(
        request, "admin", "user.revoke_tokens", target_type="user", target_id=user_id
    )
    async with request.app[RUNTIME].db.write() as session:
        if await session.get(User, user_id) is None:
            raise NotFound(f"user {user_id}")
        revoked = await revoke_all(session, user_id)
        await audit(
            session,
            request,
            "user.revoke_tokens",
            target_type="user",
            target_id=user_id,
            meta={"tokens_revoked": revoked},
        )
    return json_response({"user_id": user_id, "tokens_revoked": revoked})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/users", post_user)
    app.router.add_patch("/api/users/{user_id}", patch_user)
    app.router.add_delete("/api/users/{user_id}/tokens", revoke_tokens)
