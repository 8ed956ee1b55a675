"""The OpenAPI 3.1 description of the operator API, served at GET /api/openapi.json.

Written as data next to the routes: tests/webhooks/test_openapi.py fails when a registered /api
route is missing here, and schemathesis checks the answers against these schemas."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from webhooks.responses import json_response

Schema = dict[str, Any]
JSON = "application/json"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    """An object with these properties; extra keys are allowed (the contract says so)."""
    return {"type": "object", "required": list(required), "properties": properties}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
ID: Schema = {"type": "integer", "minimum": 1}
STRS: Schema = {"type": "array", "items": STR}


def page_of(item: str) -> Schema:
    return obj(
        ("items", "next_cursor"),
        items={"type": "array", "items": ref(item)},
        next_cursor=nullable(STR),
    )


SCHEMAS: dict[str, Schema] = {
    "Error": obj(("error",), error=STR, field=STR),
    "User": obj(
        ("id", "email", "name", "role", "active", "created_at"),
        id=INT,
        email=STR,
        name=STR,
        role={"enum": ["operator", "manager", "admin"]},
        active=BOOL,
        manager_id=nullable(INT),
        created_at=TIME,
    ),
    "Login": obj(("token", "user"), token=STR, user=ref("User")),
    "Contact": obj(
        ("id", "name", "phones", "emails", "telegram", "tags", "custom_fields", "created_at"),
        id=INT,
        name=nullable(STR),
        phones=STRS,
        emails=STRS,
        telegram={"type": "array", "items": obj(("id",), id=STR, username=nullable(STR))},
        tags=STRS,
        custom_fields={"type": "object"},
        company=nullable(STR),
        merged_into_id=nullable(INT),
        created_at=TIME,
    ),
    "Conversation": obj(
        ("id", "contact_id", "channel", "channel_type", "status", "assignee_id", "last_message_at"),
        id=INT,
        contact_id=INT,
        channel=STR,
        channel_type=STR,
        status={"enum": ["open", "pending", "closed"]},
        assignee_id=nullable(INT),
        last_message_at=TIME,
        created_at=TIME,
        contact_name=nullable(STR),
    ),
    "TimelineItem": obj(
        ("id", "contact_id", "channel", "direction", "kind", "text", "attachments", "status"),
        id=INT,
        conversation_id=nullable(INT),
        contact_id=INT,
        channel=STR,
        channel_type=STR,
        direction={"enum": ["in", "out", "internal"]},
        kind={"enum": ["message", "call", "note", "form", "event"]},
        text=STR,
        attachments={"type": "array", "items": {"type": "object"}},
        status=STR,
        error=nullable(STR),
        external_id=nullable(STR),
        created_at=TIME,
        meta={"type": "object"},
    ),
    "Lead": obj(
        ("id", "contact_id", "source", "stage", "status"),
        id=INT,
        contact_id=INT,
        source=STR,
        channel=nullable(STR),
        form_id=nullable(STR),
        pipeline=STR,
        stage=STR,
        status={"enum": ["open", "won", "lost"]},
        lost_reason=nullable(STR),
        assignee_id=nullable(INT),
    ),
    "Reminder": obj(
        ("id", "lead_id", "contact_id", "due_at", "status"),
        id=INT,
        lead_id=INT,
        contact_id=INT,
        assignee_id=nullable(INT),
        due_at=TIME,
        status={"enum": ["pending", "notified", "done", "cancelled"]},
        note=nullable(STR),
    ),
    "AuditEntry": obj(
        ("id", "user_id", "action", "target_type", "target_id", "ip", "created_at"),
        id=INT,
        user_id=nullable(INT),
        user_email=nullable(STR),
        action=STR,
        target_type=nullable(STR),
        target_id=nullable(STR),
        ip=nullable(STR),
        meta={"type": "object"},
        created_at=TIME,
    ),
    "Duplicate": obj(
        ("id", "contact_id", "other_id", "reason", "status"),
        id=INT,
        contact_id=INT,
        other_id=INT,
        other=nullable(ref("Contact")),
        reason=STR,
        status={"enum": ["open", "merged", "dismissed"]},
        created_at=TIME,
    ),
    "Deleted": obj(("deleted",), deleted={"type": "object"}),
    "Object": {"type": "object"},
}
for _name in ("Contact", "Conversation", "TimelineItem", "Lead", "Reminder", "User", "AuditEntry"):
    SCHEMAS[f"{_name}Page"] = page_of(_name)
SCHEMAS["DuplicatePage"] = page_of("Duplicate")


def query(name: str, schema: Schema = STR, description: str = "") -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema} | (
        {"description": description} if description else {}
    )


def path_id(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": ID}


PAGING = [
    query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size, default 50"),
    query("cursor", STR, "the next_cursor of the previous page"),
]


def op(
    summary: str,
    response: str | None,
    *,
    status: int = 200,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    public: bool = False,
    content_type: str = JSON,
) -> Schema:
    """One operation; every operation may also answer an Error (400, 401, 403, 404, 409, 429)."""
    answer: Schema = {"description": "success"}
    if response is not None:
        answer["content"] = {content_type: {"schema": ref(response)}}
    elif content_type != JSON:
        answer["content"] = {content_type: {"schema": STR}}
    out: Schema = {
        "summary": summary,
        "parameters": params or [],
        "responses": {
            str(status): answer,
            "default": {
                "description": "an error, with the reason (and the field, when one is at fault)",
                "content": {JSON: {"schema": ref("Error")}},
            },
        },
    }
    if body is not None:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if public:
        out["security"] = []
    return out


NAME = {"type": "string", "maxLength": 200}
CONTACT_PATCH = {
    "type": "object",
    "properties": {
        "name": nullable(NAME),
        "company": nullable(NAME),
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64}},
        "custom_fields": {"type": "object"},
        "add_phones": {"type": "array", "items": STR, "description": "any format"},
        "add_emails": {"type": "array", "items": STR},
    },
    "additionalProperties": False,
}
CONVERSATION_PATCH = {
    "type": "object",
    "properties": {
        "status": {"enum": ["open", "pending", "closed"]},
        "assignee_id": nullable(ID),
    },
    "additionalProperties": False,
}
ROLE = {"enum": ["operator", "manager", "admin"]}
USER_NEW = obj(
    ("email", "password", "role"),
    email={"type": "string", "format": "email"},
    password={"type": "string", "minLength": 8},
    role=ROLE,
    name=NAME,
    manager_id=nullable(ID),
)
USER_PATCH = {
    "type": "object",
    "properties": {
        "name": NAME,
        "role": ROLE,
        "manager_id": nullable(ID),
        "password": {"type": "string", "minLength": 8},
    },
    "additionalProperties": False,
}
ASSIGNEE = {"type": "string", "description": "me, none, or a user id"}


def paths() -> dict[str, dict[str, Schema]]:
    conv, contact = path_id("conversation_id"), path_id("contact_id")
    return {
        "/api/openapi.json": {"get": op("this document", "Object", public=True)},
        "/api/auth/login": {
            "post": op(
                "sign in (rate-limited per IP; audited, failures too)",
                "Login",
                body=obj(("email", "password"), email=STR, password=STR),
                public=True,
            )
        },
        "/api/auth/logout": {"post": op("revoke this token", "Object")},
        "/api/auth/me": {"get": op("the signed-in user", "User")},
        "/api/contacts": {
            "get": op(
                "search contacts: q (name, company, any identity), phone in any format, e-mail",
                "ContactPage",
                params=[query("q"), query("phone"), query("email"), *PAGING],
            )
        },
        "/api/contacts/{contact_id}": {
            "get": op("a contact with its leads", "Contact", params=[contact]),
            "patch": op(
                "edit name, company, tags, custom fields; add phones and e-mails",
                "Contact",
                params=[contact],
                body=CONTACT_PATCH,
            ),
            "delete": op(
                "admin only: the contact and all of theirs; audited", "Deleted", params=[contact]
            ),
        },
        "/api/contacts/{contact_id}/timeline": {
            "get": op(
                "every channel merged, oldest first", "TimelineItemPage", params=[contact, *PAGING]
            )
        },
        "/api/contacts/{contact_id}/duplicates": {
            "get": op(
                "suggested duplicates to merge",
                "DuplicatePage",
                params=[contact, query("status", {"enum": ["open", "merged", "dismissed", "all"]})],
            )
        },
        "/api/contacts/{contact_id}/duplicates/{suggestion_id}/dismiss": {
            "post": op(
                "not the same person: the suggestion stays dismissed",
                "Duplicate",
                params=[contact, path_id("suggestion_id")],
            )
        },
        "/api/contacts/{contact_id}/merge": {
            "post": op(
                "merge other_id into this contact; audited",
                "Contact",
                params=[contact],
                body=obj(("other_id",), other_id=ID),
            )
        },
        "/api/conversations": {
            "get": op(
                "conversations the user may see, most recent first",
                "ConversationPage",
                params=[
                    query("status", {"enum": ["open", "pending", "closed"]}),
                    query("channel"),
                    query("assignee", ASSIGNEE),
                    query("contact_id", ID),
                    *PAGING,
                ],
            )
        },
        "/api/conversations/{conversation_id}": {
            "get": op("a conversation", "Conversation", params=[conv]),
            "patch": op(
                "status and assignee; publishes conversation.updated",
                "Conversation",
                params=[conv],
                body=CONVERSATION_PATCH,
            ),
            "delete": op(
                "admin only: the conversation and its timeline; audited", "Deleted", params=[conv]
            ),
        },
        "/api/conversations/{conversation_id}/messages": {
            "get": op("timeline, oldest first", "TimelineItemPage", params=[conv, *PAGING]),
            "post": op(
                "queue a reply on the conversation's channel",
                "Object",
                status=202,
                params=[conv],
                body=obj(("text",), text=STR, attachments={"type": "array"}),
            ),
        },
        "/api/conversations/{conversation_id}/notes": {
            "post": op(
                "internal note",
                "TimelineItem",
                status=201,
                params=[conv],
                body=obj(("text",), text=STR),
            )
        },
        "/api/attachments": {
            "post": {
                **op("upload a file to attach to a reply", "Object", status=201),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": obj(
                                ("file",),
                                file={
                                    "type": "string",
                                    "contentMediaType": "application/octet-stream",
                                },
                            )
                        }
                    },
                },
            }
        },
        "/api/attachments/{sha256}": {
            "get": op(
                "a stored attachment, as a download",
                None,
                params=[
                    {
                        "name": "sha256",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    }
                ],
                content_type="application/octet-stream",
            )
        },
        "/api/calls/lookup": {
            "get": op(
                "caller card for a screen pop",
                "Object",
                params=[query("phone"), query("items", ID)],
            )
        },
        "/api/calls/{item_id}/comments": {
            "post": op(
                "comment on a call",
                "TimelineItem",
                status=201,
                params=[path_id("item_id")],
                body=obj(("text",), text=STR),
            )
        },
        "/api/leads": {
            "get": op(
                "leads, newest first",
                "LeadPage",
                params=[
                    query("status", {"enum": ["open", "won", "lost"]}),
                    query("stage"),
                    query("source"),
                    query("form_id"),
                    query("contact_id", ID),
                    *PAGING,
                ],
            )
        },
        "/api/leads/{lead_id}": {
            "patch": op(
                "stage, status, lost reason, assignee",
                "Lead",
                params=[path_id("lead_id")],
                body=obj(
                    (),
                    stage=STR,
                    status={"enum": ["open", "won", "lost"]},
                    lost_reason=nullable(STR),
                    assignee_id=nullable(ID),
                ),
            )
        },
        "/api/pipelines": {"get": op("lead pipelines and their stages", "Object")},
        "/api/reminders": {
            "get": op(
                "reminders, newest first",
                "ReminderPage",
                params=[
                    query("status", {"enum": ["pending", "notified", "done", "cancelled"]}),
                    query("assignee", ASSIGNEE),
                    *PAGING,
                ],
            ),
            "post": op(
                "a callback reminder",
                "Reminder",
                status=201,
                body=obj(
                    ("lead_id", "due_at"),
                    lead_id=ID,
                    due_at=TIME,
                    assignee_id=nullable(ID),
                    note=nullable(STR),
                ),
            ),
        },
        "/api/reminders/{reminder_id}/done": {
            "post": op("mark done", "Reminder", params=[path_id("reminder_id")])
        },
        "/api/reminders/{reminder_id}/cancel": {
            "post": op("cancel", "Reminder", params=[path_id("reminder_id")])
        },
        "/api/reminders/{reminder_id}/snooze": {
            "post": op(
                "move the due time",
                "Reminder",
                params=[path_id("reminder_id")],
                body=obj(("minutes",), minutes={"type": "integer", "minimum": 1}),
            )
        },
        "/api/me/notifications": {
            "get": op("where my reminders go", "Object"),
            "patch": op("change where my reminders go", "Object", body={"type": "object"}),
        },
        "/api/reports": {"get": op("manager+: the reports there are", "Object")},
        "/api/reports/{name}": {
            "get": op(
                "manager+: one report for a period (JSON or CSV)",
                "Object",
                params=[
                    {"name": "name", "in": "path", "required": True, "schema": STR},
                    query("from", STR),
                    query("to", STR),
                    query("format", {"enum": ["json", "csv"]}),
                ],
            )
        },
        "/api/export/{kind}": {
            "get": {
                **op(
                    "admin only: a streamed export; audited",
                    None,
                    params=[
                        {
                            "name": "kind",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["contacts", "leads", "timeline"]},
                        },
                        query("format", {"enum": ["csv", "json"]}),
                    ],
                ),
                "responses": {
                    "200": {
                        "description": "the rows",
                        "content": {
                            "text/csv": {"schema": STR},
                            JSON: {"schema": {"type": "array"}},
                        },
                    },
                    "default": {
                        "description": "an error",
                        "content": {JSON: {"schema": ref("Error")}},
                    },
                },
            }
        },
        "/api/import/contacts": {
            "post": {
                **op("admin only: import contacts from CSV", "Object", status=201),
                "requestBody": {"required": True, "content": {"text/csv": {"schema": STR}}},
            }
        },
        "/api/users": {
            "get": op(
                "colleagues (to assign work to)",
                "UserPage",
                params=[
                    query("role", ROLE),
                    query("active", {"enum": ["true", "false"]}),
                    query("manager_id", ID),
                    *PAGING,
                ],
            ),
            "post": op("admin only: a new user; audited", "User", status=201, body=USER_NEW),
        },
        "/api/users/{user_id}": {
            "patch": op(
                "admin only: name, role, manager, password (role/password changes revoke tokens)",
                "User",
                params=[path_id("user_id")],
                body=USER_PATCH,
            )
        },
        "/api/users/{user_id}/tokens": {
            "delete": op(
                "admin only: revoke every token of the user", "Object", params=[path_id("user_id")]
            )
        },
        "/api/users/{user_id}/deactivate": {
            "post": op(
                "admin only: deactivate; their work goes to a successor",
                "Object",
                params=[path_id("user_id")],
                body=obj((), successor_id=ID),
            )
        },
        "/api/audit": {
            "get": op(
                "admin only: the audit log, newest first",
                "AuditEntryPage",
                params=[
                    query("action", STR, 'exact, or a prefix ending in "." or "*"'),
                    query("user_id", ID),
                    query("target_type"),
                    query("target_id"),
                    query("ip"),
                    query("since", TIME),
                    query("until", TIME),
                    *PAGING,
                ],
            )
        },
        "/api/events": {
            "get": op(
                "server-sent events (text/event-stream); resume with Last-Event-ID",
                None,
                params=[query("token", STR, "for EventSource, which cannot send headers")],
                content_type="text/event-stream",
            )
        },
    }


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hub operator API",
            "version": "1",
            "description": "Bearer tokens from POST /api/auth/login. Roles: operator (own and "
            "unassigned conversations), manager (their team, leads, reminders, reports), admin "
            "(users, export, delete, audit). A refused action is a 403 with the reason, audited.",
        },
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


SPEC = spec()


async def get_spec(request: web.Request) -> web.Response:
    return json_response(SPEC)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", get_spec)
