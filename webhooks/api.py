"""The operator API: login, contacts, timeline, conversations, leads; bearer tokens."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, NoReturn, TypeVar

import structlog
from aiohttp import web
from sqlalchemy import Select, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.access import (
    can_see_assigned,
    can_see_conversation,
    may_assign,
    visible_assigned,
    visible_conversations,
)
from hub.auth.audit import record
from hub.auth.tokens import issue_token, revoke_token, user_for_token
from hub.auth.users import at_least, user_to_dict
from hub.auth.users import authenticate as check_password
from hub.inbox.live import LiveEvent, publish
from hub.inbox.replies import ReplyError, add_note, queue_reply, stored_attachments
from hub.inbox.timeline import conversation_to_dict, item_to_dict
from hub.leads.contacts import contacts_to_dicts
from hub.leads.emails import normalize_email
from hub.leads.identity import phone_claim, phone_filter
from hub.leads.leads import lead_to_dict
from hub.leads.merge import MergeError, merge_contacts
from hub.models import (
    Contact,
    Conversation,
    DuplicateSuggestion,
    Identity,
    Lead,
    TimelineItem,
    User,
)
from webhooks.context import RUNTIME
from webhooks.responses import client_ip, error, json_response

T = TypeVar("T")
log = structlog.get_logger(__name__)
USER_KEY = web.RequestKey("user", User)
PUBLIC_API = {"/api/auth/login", "/api/openapi.json"}
DEFAULT_LIMIT, MAX_LIMIT = 50, 500


class BadRequest(web.HTTPBadRequest):
    def __init__(self, reason: str, field: str | None = None) -> None:
        body = {"error": reason} | ({"field": field} if field else {})
        super().__init__(text=json.dumps(body), content_type="application/json")


class Conflict(web.HTTPConflict):
    """Raised inside a transaction, so what it had changed is rolled back."""

    def __init__(self, reason: str, **extra: Any) -> None:
        body = {"error": reason} | {k: v for k, v in extra.items() if v is not None}
        super().__init__(text=json.dumps(body), content_type="application/json")


class NotFound(web.HTTPNotFound):
    def __init__(self, what: str) -> None:
        super().__init__(
            text=json.dumps({"error": f"{what} not found"}), content_type="application/json"
        )


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith("/api/") or request.path in PUBLIC_API:
        response: web.StreamResponse = await handler(request)
        return response
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if request.path == "/api/events" and not header:  # EventSource cannot send headers
        scheme, token = "bearer", request.query.get("token", "")
    if scheme.lower() != "bearer" or not token.strip():
        return error(
            401,
            "missing bearer token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with request.app[RUNTIME].db.read() as session:
        user = await user_for_token(session, token.strip())
    if user is None:
        return error(
            401, "invalid, expired or revoked token", headers={"WWW-Authenticate": "Bearer"}
        )
    request[USER_KEY] = user
    response = await handler(request)
    return response


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("malformed JSON body") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    return data


def int_param(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name}: must be an integer", name) from None
    if number < 1 or number > 2**62:
        raise BadRequest(f"{name}: out of range", name)
    return number


def page_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    limit = int_param(raw, "limit")
    if limit > MAX_LIMIT:
        raise BadRequest(f"limit: at most {MAX_LIMIT}", "limit")
    return limit


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts, default=str).encode()).decode().rstrip("=")


def decode_cursor(request: web.Request) -> list[Any] | None:
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise BadRequest("cursor: not a cursor this API returned", "cursor") from None
    if not isinstance(parts, list) or not parts:
        raise BadRequest("cursor: not a cursor this API returned", "cursor")
    return parts


def id_cursor(request: web.Request) -> int | None:
    cursor = decode_cursor(request)
    if cursor is None:
        return None
    if not isinstance(cursor[0], int) or isinstance(cursor[0], bool):
        raise BadRequest("cursor: not a cursor this API returned", "cursor")
    return cursor[0]


def keyset_by_id(query: Select[Any], model: Any, request: web.Request) -> Select[Any]:
    """Newest first; the cursor is the last id seen."""
    if (last := id_cursor(request)) is not None:
        query = query.where(model.id < last)
    return query.order_by(model.id.desc())


def split_page(rows: list[T], limit: int, cursor_of: Callable[[T], list[Any]]) -> Page[T]:
    """Rows were fetched with limit + 1: the extra one says whether a next page exists."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(*cursor_of(rows[-1])) if more else None)


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    next_cursor: str | None


async def items_page(session: AsyncSession, request: web.Request, where: Any) -> web.Response:
    """Timeline items matching `where`, oldest first, paged forward by id."""
    limit = page_limit(request)
    query = select(TimelineItem).where(where)
    if (last := id_cursor(request)) is not None:
        query = query.where(TimelineItem.id > last)
    rows = list(await session.scalars(query.order_by(TimelineItem.id).limit(limit + 1)))
    page = split_page(rows, limit, lambda item: [item.id])
    return json_response(
        {"items": [item_to_dict(i) for i in page.rows], "next_cursor": page.next_cursor}
    )


def current_user(request: web.Request) -> User:
    return request[USER_KEY]


class Forbidden(web.HTTPForbidden):
    def __init__(self, reason: str) -> None:
        super().__init__(text=json.dumps({"error": reason}), content_type="application/json")


async def audit(
    session: AsyncSession,
    request: web.Request,
    action: str,
    *,
    target_type: str | None = None,
    target_id: int | str | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """The audit-log entry for what the signed-in user is doing, with their IP."""
    await record(
        session,
        action,
        user_id=current_user(request).id,
        ip=client_ip(request),
        target_type=target_type,
        target_id=target_id,
        meta=meta,
    )


async def deny(
    request: web.Request,
    action: str,
    reason: str,
    *,
    target_type: str | None = None,
    target_id: int | str | None = None,
    meta: dict[str, Any] | None = None,
) -> NoReturn:
    """Write the refused attempt to the audit log ("<action>.denied", with the IP) in a
    transaction of its own, then answer 403 with the reason. Call it outside any open session."""
    user = current_user(request)
    async with request.app[RUNTIME].db.write() as session:
        await audit(
            session,
            request,
            f"{action}.denied",
            target_type=target_type,
            target_id=target_id,
            meta={"role": user.role, "reason": reason, **(meta or {})},
        )
    log.info("denied", action=action, user_id=user.id, target_id=target_id)
    raise Forbidden(reason)


async def require_sight(request: web.Request, model: Any, row_id: int, action: str) -> None:
    """For a lead or reminder (a model with `assignee_id`): a 403, audited, when it is assigned
    to someone the user may not act for (the rules of hub.auth.access); missing rows pass, and
    the handler answers 404 for them."""
    user = current_user(request)
    async with request.app[RUNTIME].db.read() as session:
        assignee = await session.scalar(select(model.assignee_id).where(model.id == row_id))
        allowed = await can_see_assigned(session, user, assignee)
    if not allowed:
        what = model.__tablename__.rstrip("s")
        await deny(
            request,
            action,
            f"{what} {row_id} is assigned to someone else",
            target_type=what,
            target_id=row_id,
        )


async def require_role(
    request: web.Request,
    role: str,
    action: str,
    *,
    target_type: str | None = None,
    target_id: int | str | None = None,
) -> User:
    """The current user when their role is at least `role`; otherwise the attempt is audited
    and a 403 names the role needed."""
    user = current_user(request)
    if at_least(user, role):
        return user
    await deny(
        request,
        action,
        f"{action}: needs the {role} role; you are {user.role}",
        target_type=target_type,
        target_id=target_id,
        meta={"needed": role},
    )


# --- auth ---------------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    data = await read_json(request)
    email, password = data.get("email"), data.get("password")
    if not isinstance(email, str) or not email:
        raise BadRequest("email: required", "email")
    if not isinstance(password, str) or not password:
        raise BadRequest("password: required", "password")
    runtime = request.app[RUNTIME]
    ip = client_ip(request)
    verdict = await runtime.limiter.hit("10/minute;100/hour", "login", ip)
    if not verdict.allowed:
        return error(
            429,
            "too many login attempts; try again later",
            headers={"Retry-After": str(verdict.retry_after)},
        )
    async with runtime.db.write() as session:
        user = await check_password(session, email, password)
        if user is None:
            await record(
                session,
                "auth.login_failed",
                user_id=None,
                ip=ip,
                meta={"email": email.strip().lower()[:254]},
            )
            token = None
        else:
            token = await issue_token(session, user, ip)
            await record(
                session, "auth.login", user_id=user.id, ip=ip, target_type="user", target_id=user.id
            )
    if user is None or token is None:
        return error(401, "wrong e-mail or password")
    return json_response({"token": token, "user": user_to_dict(user)})


async def logout(request: web.Request) -> web.Response:
    token = request.headers["Authorization"].partition(" ")[2].strip()
    async with request.app[RUNTIME].db.write() as session:
        await revoke_token(session, token)
        await audit(session, request, "auth.logout")
    return json_response({"ok": True})


async def me(request: web.Request) -> web.Response:
    return json_response(user_to_dict(current_user(request)))


# --- contacts -----------------------------------------------------------------------------


async def list_contacts(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    limit = page_limit(request)
    query = select(Contact).where(Contact.merged_into_id.is_(None))
    region = runtime.settings.default_region
    if phone := request.query.get("phone", "").strip():
        query = query.where(
            Contact.id.in_(select(Identity.contact_id).where(phone_filter(phone, region)))
        )
    if email := request.query.get("email", "").strip():
        query = query.where(
            Contact.id.in_(
                select(Identity.contact_id).where(
                    Identity.kind == "email", Identity.value == email.lower()
                )
            )
        )
    if q := request.query.get("q", "").strip():
        pattern = f"%{q.lower()}%"
        query = query.where(
            or_(
                func.lower(Contact.name).like(pattern),
                func.lower(Contact.company).like(pattern),
                Contact.id.in_(
                    select(Identity.contact_id).where(
                        or_(func.lower(Identity.value).like(pattern), phone_filter(q, region))
                    )
                ),
            )
        )
    query = keyset_by_id(query, Contact, request).limit(limit + 1)
    async with runtime.db.read() as session:
        page = split_page(list(await session.scalars(query)), limit, lambda c: [c.id])
        items = await contacts_to_dicts(session, page.rows)
    return json_response({"items": items, "next_cursor": page.next_cursor})


async def load_contact(session: AsyncSession, request: web.Request) -> Contact:
    contact_id = int_param(request.match_info["contact_id"], "id")
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id}")
    return contact


async def get_contact(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.read() as session:
        contact = await load_contact(session, request)
        (body,) = await contacts_to_dicts(session, [contact])
        leads = await session.scalars(
            select(Lead).where(Lead.contact_id == contact.id).order_by(Lead.id.desc())
        )
        body["leads"] = [lead_to_dict(lead) for lead in leads]
    return json_response(body)


async def contact_timeline(request: web.Request) -> web.Response:
    """Every item of the contact on every channel, oldest first."""
    async with request.app[RUNTIME].db.read() as session:
        contact = await load_contact(session, request)
        return await items_page(session, request, TimelineItem.contact_id == contact.id)


async def merge_contact(request: web.Request) -> web.Response:
    data = await read_json(request)
    other = data.get("other_id")
    if isinstance(other, bool) or not isinstance(other, int | str):
        raise BadRequest("other_id: required, the id of the contact to merge in", "other_id")
    other_id = int_param(str(other), "other_id")
    keep_id = int_param(request.match_info["contact_id"], "id")
    user: User = current_user(request)
    try:
        async with request.app[RUNTIME].db.write() as session:
            contact = await merge_contacts(
                session, keep_id, other_id, user_id=user.id, ip=client_ip(request)
            )
            (body,) = await contacts_to_dicts(session, [contact])
    except LookupError:
        raise NotFound("contact") from None
    except MergeError as exc:
        raise BadRequest(str(exc), "other_id") from None
    return json_response(body)


MAX_TAGS, MAX_FIELDS, MAX_NEW_IDENTITIES = 50, 100, 20


def optional_text(data: dict[str, Any], key: str, max_len: int) -> str | None:
    value = data[key]
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise BadRequest(f"{key}: a string of at most {max_len} characters, or null", key)
    return value.strip() or None


def tags_of(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise BadRequest(f"tags: a list of at most {MAX_TAGS} strings", "tags")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 64:
            raise BadRequest(
                "tags: each tag is a non-empty string of at most 64 characters", "tags"
            )
        if tag.strip() not in tags:
            tags.append(tag.strip())
    return tags


def custom_fields_of(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > MAX_FIELDS:
        raise BadRequest(f"custom_fields: an object of at most {MAX_FIELDS} keys", "custom_fields")
    for key, item in value.items():
        if not key or len(key) > 64:
            raise BadRequest("custom_fields: keys are 1 to 64 characters", "custom_fields")
        scalar = item is None or isinstance(item, str | int | float | bool)
        if not scalar or (isinstance(item, str) and len(item) > 2000):
            raise BadRequest(
                f"custom_fields.{key}: a string (at most 2000 characters), number, "
                "true/false or null",
                "custom_fields",
            )
    return dict(value)


def new_identities(data: dict[str, Any], region: str | None) -> list[tuple[str, str, str]]:
    """(kind, value, raw) for add_phones / add_emails: phones in any format become E.164."""
    out: list[tuple[str, str, str]] = []
    for key, kind in (("add_phones", "phone"), ("add_emails", "email")):
        values = data.get(key, [])
        if not isinstance(values, list) or len(values) > MAX_NEW_IDENTITIES:
            raise BadRequest(f"{key}: a list of at most {MAX_NEW_IDENTITIES} strings", key)
        for raw in values:
            if not isinstance(raw, str) or not raw.strip() or len(raw) > 254:
                raise BadRequest(f"{key}: each entry is a non-empty string", key)
            if kind == "phone":
                claim = phone_claim(raw, region)
                if not claim.valid:
                    raise BadRequest(
                        f"{key}: {raw.strip()!r} is not a phone number (write it with the "
                        "country code, e.g. +998 90 123 45 67)",
                        key,
                    )
                value = claim.value
            else:
                email = normalize_email(raw)
                if email is None:
                    raise BadRequest(f"{key}: {raw.strip()!r} is not an e-mail address", key)
                value = email
            if (kind, value) not in {(k, v) for k, v, _ in out}:
                out.append((kind, value, raw.strip()))
    return out


CONTACT_FIELDS = ("name", "company", "tags", "custom_fields", "add_phones", "add_emails")


async def patch_contact(request: web.Request) -> web.Response:
    """PATCH {"name", "company", "tags", "custom_fields", "add_phones", "add_emails"} (any of
    them). A phone or e-mail another contact already has is a 409 naming it: merge instead."""
    data = await read_json(request)
    if unknown := sorted(set(data) - set(CONTACT_FIELDS)):
        raise BadRequest(
            f"{unknown[0]}: not a field you can change; one of {', '.join(CONTACT_FIELDS)}",
            unknown[0],
        )
    if not data:
        raise BadRequest(f"nothing to change: send any of {', '.join(CONTACT_FIELDS)}")
    changes: dict[str, Any] = {}
    for key, max_len in (("name", 200), ("company", 200)):
        if key in data:
            changes[key] = optional_text(data, key, max_len)
    if "tags" in data:
        changes["tags"] = tags_of(data["tags"])
    if "custom_fields" in data:
        changes["custom_fields"] = custom_fields_of(data["custom_fields"])
    runtime = request.app[RUNTIME]
    claims = new_identities(data, runtime.settings.default_region)
    try:
        async with runtime.db.write() as session:
            contact = await load_contact(session, request)
            if contact.merged_into_id is not None:
                raise Conflict(
                    f"contact {contact.id} was merged into {contact.merged_into_id}; edit that one",
                    contact_id=contact.merged_into_id,
                )
            for key, value in changes.items():
                setattr(contact, key, value)
            added = []
            for kind, value, raw in claims:
                owner = await session.scalar(
                    select(Identity.contact_id).where(
                        Identity.kind == kind, Identity.value == value
                    )
                )
                if owner == contact.id:
                    continue
                if owner is not None:
                    field = "add_phones" if kind == "phone" else "add_emails"
                    raise Conflict(
                        f"{field}: {value} belongs to contact {owner}; merge the two contacts "
                        "instead",
                        field=field,
                        contact_id=owner,
                    )
                session.add(Identity(contact_id=contact.id, kind=kind, value=value, raw=raw))
                added.append(value)
            await session.flush()
            (body,) = await contacts_to_dicts(session, [contact])
            await audit(
                session,
                request,
                "contact.update",
                target_type="contact",
                target_id=contact.id,
                meta={"fields": sorted(changes), "added": added},
            )
    except IntegrityError:  # the same identity added concurrently elsewhere
        return error(409, "a phone or e-mail was just added to another contact; reload and retry")
    return json_response(body)


async def contact_duplicates(request: web.Request) -> web.Response:
    """Contacts an event claimed as the same person as this one (never merged on a claim anyone
    could type): the operator decides with POST .../merge. ?status=open|merged|dismissed|all."""
    status = request.query.get("status", "open")
    if status not in ("open", "merged", "dismissed", "all"):
        raise BadRequest("status: one of open, merged, dismissed, all", "status")
    async with request.app[RUNTIME].db.read() as session:
        contact = await load_contact(session, request)
        query = select(DuplicateSuggestion).where(
            or_(
                DuplicateSuggestion.contact_id == contact.id,
                DuplicateSuggestion.other_id == contact.id,
            )
        )
        if status != "all":
            query = query.where(DuplicateSuggestion.status == status)
        rows = list(await session.scalars(query.order_by(DuplicateSuggestion.id)))
        other_ids = [r.other_id if r.contact_id == contact.id else r.contact_id for r in rows]
        others = {
            c.id: c for c in await session.scalars(select(Contact).where(Contact.id.in_(other_ids)))
        }
        dicts = {d["id"]: d for d in await contacts_to_dicts(session, list(others.values()))}
    items = [
        {
            "id": row.id,
            "contact_id": contact.id,
            "other_id": other_id,
            "other": dicts.get(other_id),
            "reason": row.reason,
            "status": row.status,
            "created_at": row.created_at.isoformat(),
        }
        for row, other_id in zip(rows, other_ids, strict=True)
    ]
    return json_response({"items": items, "next_cursor": None})


async def dismiss_duplicate(request: web.Request) -> web.Response:
    """POST .../duplicates/{suggestion_id}/dismiss: not the same person; the suggestion stays
    dismissed (a later event claiming both again does not reopen it)."""
    suggestion_id = int_param(request.match_info["suggestion_id"], "suggestion_id")
    async with request.app[RUNTIME].db.write() as session:
        contact = await load_contact(session, request)
        row = await session.get(DuplicateSuggestion, suggestion_id, with_for_update=True)
        if row is None or contact.id not in (row.contact_id, row.other_id):
            raise NotFound(f"duplicate suggestion {suggestion_id} of contact {contact.id}")
        if row.status != "dismissed":
            row.status = "dismissed"
            await audit(
                session,
                request,
                "contact.duplicate_dismiss",
                target_type="contact",
                target_id=contact.id,
                meta={"suggestion_id": row.id, "pair": [row.contact_id, row.other_id]},
            )
        other_id = row.other_id if row.contact_id == contact.id else row.contact_id
        body = {
            "id": row.id,
            "contact_id": contact.id,
            "other_id": other_id,
            "reason": row.reason,
            "status": row.status,
            "created_at": row.created_at.isoformat(),
        }
    return json_response(body)


async def delete_contact(request: web.Request) -> web.Response:
    """Admin only: the person and everything of theirs (identities, conversations, timeline,
    leads, reminders) goes, with the contacts merged into them; the audit entry stays."""
    contact_id = int_param(request.match_info["contact_id"], "id")
    await require_role(
        request, "admin", "contact.delete", target_type="contact", target_id=contact_id
    )
    async with request.app[RUNTIME].db.write() as session:
        contact = await session.get(Contact, contact_id, with_for_update=True)
        if contact is None:
            raise NotFound(f"contact {contact_id}")
        ids, frontier = [contact_id], [contact_id]
        while frontier:  # contacts merged into this one (and into those) are the same person
            frontier = list(
                await session.scalars(
                    select(Contact.id).where(Contact.merged_into_id.in_(frontier))
                )
            )
            ids += frontier
        counts = {}
        for name, model in (
            ("conversations", Conversation),
            ("items", TimelineItem),
            ("leads", Lead),
        ):
            counts[name] = int(
                await session.scalar(
                    select(func.count()).select_from(model).where(model.contact_id.in_(ids))
                )
                or 0
            )
        await session.execute(
            update(Contact).where(Contact.id.in_(ids)).values(merged_into_id=None)
        )
        await session.execute(delete(Contact).where(Contact.id.in_(ids)))
        deleted = {"contact_id": contact_id, "merged_contacts": len(ids) - 1, **counts}
        await audit(
            session,
            request,
            "contact.delete",
            target_type="contact",
            target_id=contact_id,
            meta={"name": contact.name, **deleted},
        )
    return json_response({"deleted": deleted})


# --- conversations and leads --------------------------------------------------------------


async def list_conversations(request: web.Request) -> web.Response:
    limit = page_limit(request)
    user: User = current_user(request)
    query = select(Conversation).join(Contact, Contact.id == Conversation.contact_id)
    if (scope := visible_conversations(user)) is not None:
        query = query.where(scope)
    if status := request.query.get("status"):
        if status not in ("open", "pending", "closed"):
            raise BadRequest("status: one of open, pending, closed", "status")
        query = query.where(Conversation.status == status)
    if channel := request.query.get("channel"):
        query = query.where(Conversation.channel == channel)
    if contact_id := request.query.get("contact_id"):
        query = query.where(Conversation.contact_id == int_param(contact_id, "contact_id"))
    if assignee := request.query.get("assignee"):
        if assignee == "me":
            query = query.where(Conversation.assignee_id == user.id)
        elif assignee == "none":
            query = query.where(Conversation.assignee_id.is_(None))
        else:
            query = query.where(Conversation.assignee_id == int_param(assignee, "assignee"))
    if (cursor := decode_cursor(request)) is not None:
        try:
            when, last_id = datetime.fromisoformat(cursor[0]), int(cursor[1])
        except (ValueError, TypeError, IndexError):
            raise BadRequest("cursor: not a cursor this API returned", "cursor") from None
        query = query.where(
            or_(
                Conversation.last_message_at < when,
                and_(Conversation.last_message_at == when, Conversation.id < last_id),
            )
        )
    query = query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
    async with request.app[RUNTIME].db.read() as session:
        page = split_page(
            list(await session.scalars(query.limit(limit + 1))),
            limit,
            lambda c: [c.last_message_at.isoformat(), c.id],
        )
        contact_ids = {r.contact_id for r in page.rows}
        rows = await session.execute(
            select(Contact.id, Contact.name).where(Contact.id.in_(contact_ids))
        )
        names = {row.id: row.name for row in rows}
    items = [conversation_to_dict(r) | {"contact_name": names[r.contact_id]} for r in page.rows]
    return json_response({"items": items, "next_cursor": page.next_cursor})


async def load_conversation(session: AsyncSession, request: web.Request) -> Conversation:
    conversation_id = int_param(request.match_info["conversation_id"], "id")
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id}")
    return conversation


async def check_conversation(request: web.Request, action: str) -> Conversation:
    """The conversation of the URL when the user may see it (operators: their own and unassigned
    ones; managers: also their team's); otherwise an audited 403 naming why."""
    user = current_user(request)
    async with request.app[RUNTIME].db.read() as session:
        conversation = await load_conversation(session, request)
        allowed = await can_see_conversation(session, user, conversation)
    if not allowed:
        await deny(
            request,
            action,
            f"conversation {conversation.id} is assigned to user {conversation.assignee_id}, "
            f"outside what a{'n' if user.role == 'operator' else ''} {user.role} may "
            "see: ask them or a manager to reassign it",
            target_type="conversation",
            target_id=conversation.id,
        )
    return conversation


async def get_conversation(request: web.Request) -> web.Response:
    conversation = await check_conversation(request, "conversation.view")
    return json_response(conversation_to_dict(conversation))


async def conversation_messages(request: web.Request) -> web.Response:
    conversation = await check_conversation(request, "conversation.view")
    async with request.app[RUNTIME].db.read() as session:
        return await items_page(session, request, TimelineItem.conversation_id == conversation.id)


CONVERSATION_FIELDS = ("status", "assignee_id")


async def patch_conversation(request: web.Request) -> web.Response:
    """PATCH {"status"?, "assignee_id"?}: close, reopen, take, hand over; a live
    conversation.updated goes out after commit."""
    data = await read_json(request)
    if unknown := sorted(set(data) - set(CONVERSATION_FIELDS)):
        raise BadRequest(f"{unknown[0]}: not a field you can change; one of status, assignee_id")
    if not data:
        raise BadRequest("nothing to change: send status and/or assignee_id")
    status = data.get("status")
    if "status" in data and status not in ("open", "pending", "closed"):
        raise BadRequest("status: one of open, pending, closed", "status")
    assignee_id = data.get("assignee_id")
    if assignee_id is not None and (
        isinstance(assignee_id, bool) or not isinstance(assignee_id, int)
    ):
        raise BadRequest("assignee_id: a user id (an integer) or null", "assignee_id")
    user = current_user(request)
    conversation = await check_conversation(request, "conversation.update")
    if "assignee_id" in data:
        async with request.app[RUNTIME].db.read() as session:
            refusal = await may_assign(session, user, assignee_id)
            assignee = None if assignee_id is None else await session.get(User, assignee_id)
        if assignee_id is not None and (assignee is None or not assignee.active):
            raise BadRequest(f"assignee_id: no active user {assignee_id}", "assignee_id")
        if refusal is not None:
            await deny(
                request,
                "conversation.assign",
                f"assignee_id: {refusal}",
                target_type="conversation",
                target_id=conversation.id,
                meta={"assignee_id": assignee_id},
            )
    runtime = request.app[RUNTIME]
    async with runtime.db.write() as session:
        row = await session.get(Conversation, conversation.id, with_for_update=True)
        if row is None:
            raise NotFound(f"conversation {conversation.id}")
        before = {key: getattr(row, key) for key in CONVERSATION_FIELDS}
        for key in CONVERSATION_FIELDS:
            if key in data:
                setattr(row, key, data[key])
        await session.flush()
        body = conversation_to_dict(row)
        changed = {k: v for k, v in before.items() if body[k] != v}
        if changed:
            await audit(
                session,
                request,
                "conversation.update",
                target_type="conversation",
                target_id=row.id,
                meta={"before": changed, "after": {k: body[k] for k in changed}},
            )
    if changed:
        live = [LiveEvent("conversation.updated", body)]
        await publish(runtime.redis, runtime.settings.redis_prefix, live)
    return json_response(body)


async def delete_conversation(request: web.Request) -> web.Response:
    """Admin only: the conversation and its timeline items go; the contact and leads stay."""
    conversation_id = int_param(request.match_info["conversation_id"], "id")
    await require_role(
        request,
        "admin",
        "conversation.delete",
        target_type="conversation",
        target_id=conversation_id,
    )
    async with request.app[RUNTIME].db.write() as session:
        conversation = await session.get(Conversation, conversation_id, with_for_update=True)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id}")
        items = await session.scalar(
            select(func.count())
            .select_from(TimelineItem)
            .where(TimelineItem.conversation_id == conversation_id)
        )
        await session.execute(
            delete(TimelineItem).where(TimelineItem.conversation_id == conversation_id)
        )
        await session.execute(delete(Conversation).where(Conversation.id == conversation_id))
        deleted = {"conversation_id": conversation_id, "items": int(items or 0)}
        await audit(
            session,
            request,
            "conversation.delete",
            target_type="conversation",
            target_id=conversation_id,
            meta={
                "contact_id": conversation.contact_id,
                "channel": conversation.channel,
                **deleted,
            },
        )
    return json_response({"deleted": deleted})


async def list_leads(request: web.Request) -> web.Response:
    limit = page_limit(request)
    query = select(Lead)
    for key in ("status", "stage", "source"):
        if value := request.query.get(key):
            query = query.where(getattr(Lead, key) == value)
    if form_id := request.query.get("form_id"):
        query = query.where(Lead.form_id == form_id)
    if contact_id := request.query.get("contact_id"):
        query = query.where(Lead.contact_id == int_param(contact_id, "contact_id"))
    if (visible := visible_assigned(current_user(request), Lead.assignee_id)) is not None:
        query = query.where(visible)
    query = keyset_by_id(query, Lead, request).limit(limit + 1)
    async with request.app[RUNTIME].db.read() as session:
        page = split_page(list(await session.scalars(query)), limit, lambda lead: [lead.id])
    return json_response(
        {"items": [lead_to_dict(r) for r in page.rows], "next_cursor": page.next_cursor}
    )


async def post_reply(request: web.Request) -> web.Response:
    """Queue a reply on the conversation's channel; the worker delivers it and its status moves
    to sent/delivered/failed. 202: accepted, not yet sent."""
    data = await read_json(request)
    text = data.get("text", "")
    if not isinstance(text, str):
        raise BadRequest("text: required, a string", "text")
    runtime = request.app[RUNTIME]
    await check_conversation(request, "conversation.reply")
    try:
        files = stored_attachments(runtime.settings.data_dir, data.get("attachments"))
        async with runtime.db.write() as session:
            conversation = await load_conversation(session, request)
            item, live = await queue_reply(
                session, runtime.channels, conversation, text, current_user(request).id, files
            )
    except ReplyError as exc:
        raise BadRequest(str(exc), exc.field) from None
    await runtime.enqueue_committed("deliver", item.id, job_id=f"deliver:{item.id}")
    await publish(runtime.redis, runtime.settings.redis_prefix, live)
    return json_response({"id": item.id, "status": item.status}, status=202)


async def post_note(request: web.Request) -> web.Response:
    data = await read_json(request)
    text = data.get("text")
    if not isinstance(text, str):
        raise BadRequest("text: required, a string", "text")
    runtime = request.app[RUNTIME]
    await check_conversation(request, "conversation.note")
    try:
        async with runtime.db.write() as session:
            conversation = await load_conversation(session, request)
            item, live = await add_note(session, conversation, text, current_user(request).id)
            body = item_to_dict(item)
    except ReplyError as exc:
        raise BadRequest(str(exc), exc.field) from None
    await publish(runtime.redis, runtime.settings.redis_prefix, live)
    return json_response(body, status=201)


async def get_attachment(request: web.Request) -> web.StreamResponse:
    """A stored attachment's bytes, by the sha256 on its timeline item; always a download
    (never rendered inline as our origin's page) in the content type it arrived as."""
    from hub.inbox.attachments import find_stored, is_sha256, safe_filename

    digest = request.match_info["sha256"]
    if not is_sha256(digest):
        raise BadRequest("sha256: 64 lowercase hexadecimal digits", "sha256")
    stored = find_stored(request.app[RUNTIME].settings.data_dir, digest)
    if stored is None:
        raise NotFound(f"attachment {digest}")
    name = safe_filename(stored.name)
    return web.FileResponse(
        stored.path,
        headers={
            "Content-Type": stored.content_type,
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, max-age=31536000, immutable",
        },
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/auth/login", login)
    r.add_post("/api/auth/logout", logout)
    r.add_get("/api/auth/me", me)
    r.add_get("/api/contacts", list_contacts)
    r.add_get("/api/contacts/{contact_id}", get_contact)
    r.add_get("/api/contacts/{contact_id}/timeline", contact_timeline)
    r.add_patch("/api/contacts/{contact_id}", patch_contact)
    r.add_delete("/api/contacts/{contact_id}", delete_contact)
    r.add_get("/api/contacts/{contact_id}/duplicates", contact_duplicates)
    r.add_post("/api/contacts/{contact_id}/duplicates/{suggestion_id}/dismiss", dismiss_duplicate)
    r.add_post("/api/contacts/{contact_id}/merge", merge_contact)
    r.add_get("/api/conversations", list_conversations)
    r.add_get("/api/conversations/{conversation_id}", get_conversation)
    r.add_patch("/api/conversations/{conversation_id}", patch_conversation)
    r.add_delete("/api/conversations/{conversation_id}", delete_conversation)
    r.add_get("/api/conversations/{conversation_id}/messages", conversation_messages)
    r.add_post("/api/conversations/{conversation_id}/messages", post_reply)
    r.add_post("/api/conversations/{conversation_id}/notes", post_note)
    r.add_get("/api/leads", list_leads)
    r.add_get("/api/attachments/{sha256}", get_attachment)
