"""Website form routes: the submission endpoint, CORS preflight, the embed script, a hosted page."""

from __future__ import annotations

import html
import json
from importlib import resources

import structlog
from aiohttp import web

from hub.channels.base import InboundRequest, InvalidPayload
from hub.channels.webform import WebForm
from hub.leads.acknowledge import form_acknowledgement
from hub.metrics import INBOUND_EVENTS
from webhooks.context import RUNTIME
from webhooks.inbound import store
from webhooks.responses import client_ip, error, json_response

log = structlog.get_logger(__name__)
PREFLIGHT_HEADERS = "Content-Type, Idempotency-Key"
EMBED_TEMPLATE = resources.files("webhooks").joinpath("static/embed.js").read_text("utf-8")


def _form(request: web.Request) -> WebForm:
    form = request.app[RUNTIME].forms.get(request.match_info["form_id"])
    if form is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no form {request.match_info['form_id']!r}"}),
            content_type="application/json",
        )
    return form


def _wants_redirect(request: web.Request) -> bool:
    """A plain HTML <form> post (not our script, not an API client) gets a page back."""
    is_form_post = request.content_type == "application/x-www-form-urlencoded"
    accept = request.headers.get("Accept", "")
    return is_form_post and "text/html" in accept and "application/json" not in accept


def _public_base(request: web.Request) -> str:
    public = request.app[RUNTIME].settings.public_url
    return public or f"{request.scheme}://{request.host}"


async def preflight(request: web.Request) -> web.Response:
    form = _form(request)
    origin = request.headers.get("Origin", "")
    cors = form.cors_headers(origin)
    if not cors:
        return error(403, f"origin {origin or '(none)'} may not post to form {form.form.id}")
    return web.Response(
        status=204,
        headers={
            **cors,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": PREFLIGHT_HEADERS,
            "Access-Control-Max-Age": "600",
        },
    )


async def submit(request: web.Request) -> web.StreamResponse:
    form = _form(request)
    runtime = request.app[RUNTIME]
    channel = form.form.id
    origin = request.headers.get("Origin", "")
    cors = form.cors_headers(origin)

    def rejected(status: int, reason: str, **extra: object) -> web.Response:
        INBOUND_EVENTS.labels(channel, "form", "rejected").inc()
        headers = dict(cors)
        if status == 429:
            headers["Retry-After"] = str(extra.get("retry_after", 1))
        return error(status, reason, headers=headers, **extra)

    limit = form.form.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return rejected(413, f"the body is larger than {limit} bytes")
    verdict = await runtime.limiter.hit(form.form.rate_limit, "form", channel, client_ip(request))
    if not verdict.allowed:
        return rejected(
            429, "too many submissions; try again later", retry_after=verdict.retry_after
        )
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body.extend(chunk)
        if len(body) > limit:
            return rejected(413, f"the body is larger than {limit} bytes")
    inbound = InboundRequest(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=bytes(body),
        query=dict(request.query),
        remote=client_ip(request),
    )
    if not form.verify(inbound):
        return rejected(403, f"origin {origin} may not post to form {channel}")
    try:
        events = form.parse(inbound)
    except InvalidPayload as exc:
        return rejected(400, exc.reason, field=exc.field)
    if not events:  # the honeypot: answered like success, nothing stored
        INBOUND_EVENTS.labels(channel, "form", "rejected").inc()
        log.info("form_honeypot", form=channel, ip=client_ip(request))
        if _wants_redirect(request):
            raise web.HTTPSeeOther(form.form.success_url or f"/forms/{channel}/thanks")
        return json_response({"lead_id": None, "contact_id": None}, 201, headers=cors)
    result = await store(runtime, events[0])
    if _wants_redirect(request):
        raise web.HTTPSeeOther(form.form.success_url or f"/forms/{channel}/thanks")
    return json_response(
        {
            "lead_id": result.lead_id,
            "contact_id": result.contact_id,
            "item_id": result.item_id,
            "duplicate": result.duplicate,
            "message": form_acknowledgement(runtime.settings, channel),
        },
        status=201,  # a retried submission gets the answer the first one got
        headers=cors,
    )


async def embed_js(request: web.Request) -> web.Response:
    form = _form(request).form
    config = {
        "id": form.id,
        "action": f"{_public_base(request)}/forms/{form.id}",
        "fields": list(form.fields),
        "required": list(form.required),
        "title": form.title,
        "submit_label": form.submit_label,
        "success": form_acknowledgement(request.app[RUNTIME].settings, form.id),
    }
    # </script> cannot appear in JSON embedded in JS served as a script, but escape anyway.
    blob = json.dumps(config, ensure_ascii=False).replace("</", "<\\/")
    return web.Response(
        text=EMBED_TEMPLATE.replace("__HUB_FORM_CONFIG__", blob),
        content_type="application/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}
</style>
</head><body>{body}</body></html>"""


async def hosted_page(request: web.Request) -> web.Response:
    """A page that shows the form: a link to share, and a live demo of the embed script."""
    form = _form(request).form
    body = (
        f'<div data-hub-form="{html.escape(form.id)}"></div>'
        f'<script src="/forms/{html.escape(form.id)}/embed.js" async></script>'
    )
    return web.Response(
        text=PAGE.format(title=html.escape(form.title), body=body), content_type="text/html"
    )


async def thanks(request: web.Request) -> web.Response:
    form = _form(request).form
    said = form_acknowledgement(request.app[RUNTIME].settings, form.id)
    text = html.escape(said or "We got your request and will be in touch soon.")
    body = f"<h1>Thank you!</h1><p>{text}</p>"
    return web.Response(text=PAGE.format(title="Thank you", body=body), content_type="text/html")


async def home(request: web.Request) -> web.Response:
    """What this hub serves: every form with its embed snippet, and the channels."""
    runtime = request.app[RUNTIME]
    forms = "".join(
        f'<li><a href="/forms/{html.escape(f)}">{html.escape(f)}</a>: '
        f"<code>&lt;div data-hub-form=&quot;{html.escape(f)}&quot;&gt;&lt;/div&gt;"
        f"&lt;script src=&quot;{html.escape(_public_base(request))}/forms/{html.escape(f)}"
        f"/embed.js&quot; async&gt;&lt;/script&gt;</code></li>"
        for f in sorted(runtime.forms)
    )
    channels = "".join(
        f"<li>{html.escape(c.name)}: {html.escape(c.describe())}</li>"
        for c in runtime.channels.values()
    )
    body = (
        "<h1>hub is running</h1>"
        f"<h2>Forms</h2><ul>{forms or '<li>none configured: add a [forms.NAME] table</li>'}</ul>"
        f"<h2>Channels</h2><ul>{channels or '<li>none configured</li>'}</ul>"
        "<p>API: <code>POST /api/auth/login</code>, then <code>/api/contacts</code>, "
        "<code>/api/conversations</code>, <code>/api/leads</code>. "
        'Health: <a href="/healthz">/healthz</a>, metrics: <a href="/metrics">/metrics</a>.</p>'
    )
    return web.Response(text=PAGE.format(title="hub", body=body), content_type="text/html")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/forms", home)  # "/" is the operator inbox (webhooks/ui)
    app.router.add_route("OPTIONS", "/forms/{form_id}", preflight)
    app.router.add_post("/forms/{form_id}", submit)
    app.router.add_get("/forms/{form_id}", hosted_page)
    app.router.add_get("/forms/{form_id}/embed.js", embed_js)
    app.router.add_get("/forms/{form_id}/thanks", thanks)
