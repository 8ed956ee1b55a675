"""The operator API: login, contacts, timeline, conversations, leads; bearer tokens."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog
from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth.audit import record
from hub.auth.tokens import issue_token, revoke_token, user_for_token
from hub.auth.users import authenticate as check_password
from hub.auth.users import user_to_dict
from hub.inbox.live import publish
from hub.inbox.replies import ReplyError, add_note, queue_reply
from hub.inbox.timeline import conversation_to_dict, item_to_dict
from hub.leads.contacts import contacts_to_dicts
from hub.leads.identity import phone_filter
from hub.leads.leads import lead_to_dict
from hub.leads.merge import MergeError, merge_contacts
from hub.models import Contact, Conversation, Identity, Lead, TimelineItem, User
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
        await record(
            session, "auth.logout", user_id=current_user(request).id, ip=client_ip(request)
        )
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


# --- conversations and leads --------------------------------------------------------------


async def list_conversations(request: web.Request) -> web.Response:
    limit = page_limit(request)
    user: User = current_user(request)
    query = select(Conversation).join(Contact, Contact.id == Conversation.contact_id)
    if status := request.query.get("status"):
        if status not in ("open", "pending", "closed"):
            raise BadRequest("status: one of open, pending, closed", "status")
        query = query.where(Conversation.status == status)
    if channel := request.query.get("channel"):
        query = query.where(Conversation.channel == channel)
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


async def get_conversation(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.read() as session:
        conversation = await load_conversation(session, request)
    return json_response(conversation_to_dict(conversation))


async def conversation_messages(request: web.Request) -> web.Response:
    async with request.app[RUNTIME].db.read() as session:
        conversation = await load_conversation(session, request)
        return await items_page(session, request, TimelineItem.conversation_id == conversation.id)


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
    text = data.get("text")
    if not isinstance(text, str):
        raise BadRequest("text: required, a string", "text")
    if data.get("attachments"):
        raise BadRequest("attachments: sending files is not supported yet", "attachments")
    runtime = request.app[RUNTIME]
    try:
        async with runtime.db.write() as session:
            conversation = await load_conversation(session, request)
            item, live = await queue_reply(
                session, runtime.channels, conversation, text, current_user(request).id
            )
    except ReplyError as exc:
        raise BadRequest(str(exc), exc.field) from None
    try:
        await runtime.enqueue("deliver", item.id, job_id=f"deliver:{item.id}")
    except (RedisError, OSError) as exc:  # committed: the worker's sweep re-queues it
        log.warning("enqueue_failed", item_id=item.id, error=str(exc))
    await publish(runtime.redis, runtime.settings.redis_prefix, live)
    return json_response({"id": item.id, "status": item.status}, status=202)


async def post_note(request: web.Request) -> web.Response:
    data = await read_json(request)
    text = data.get("text")
    if not isinstance(text, str):
        raise BadRequest("text: required, a string", "text")
    runtime = request.app[RUNTIME]
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
    r.add_post("/api/contacts/{contact_id}/merge", merge_contact)
    r.add_get("/api/conversations", list_conversations)
    r.add_get("/api/conversations/{conversation_id}", get_conversation)
    r.add_get("/api/conversations/{conversation_id}/messages", conversation_messages)
    r.add_post("/api/conversations/{conversation_id}/messages", post_reply)
    r.add_post("/api/conversations/{conversation_id}/notes", post_note)
    r.add_get("/api/leads", list_leads)
    r.add_get("/api/attachments/{sha256}", get_attachment)
