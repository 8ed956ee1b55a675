"""Sending through Twilio's Messages API with the official client, over the injected aiohttp
session and pointed at the configured api_base (a local fake in tests)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from twilio.base.exceptions import TwilioException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from hub.channels.base import SendResult
from hub.channels.twilio.errors import explain

log = structlog.get_logger(__name__)

REQUEST_SECONDS = 20.0
# Client() otherwise reads TWILIO_EDGE/TWILIO_REGION from the environment and rewrites the host;
# here the configuration file alone decides where requests go.
_NO_ENVIRONMENT = {"TWILIO_EDGE": "", "TWILIO_REGION": ""}


class SessionHttpClient(AsyncHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """twilio's async transport over a session the caller owns (the worker's shared one); it
    remembers the last answer so an error can be reported with Twilio's own words."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float = REQUEST_SECONDS) -> None:
        # twilio's request logging is not called: structlog events below say what happened.
        super().__init__(logging.getLogger("twilio.http_client"), True, timeout)
        self.session = session
        self.last_text = ""
        self.last_headers: Mapping[str, str] = {}

    async def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, object] | None = None,
        data: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  # twilio calls it by this name
        allow_redirects: bool = False,
    ) -> Response:
        form: list[tuple[str, str]] = []
        for key, value in (data or {}).items():  # repeated keys (MediaUrl) come as lists
            values = value if isinstance(value, list) else [value]
            form.extend((key, str(v)) for v in values)
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        async with self.session.request(
            method.upper(),
            url,
            params={k: str(v) for k, v in (params or {}).items()} or None,
            data=form or None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            allow_redirects=allow_redirects,
        ) as answer:
            self.last_text = await answer.text()
            self.last_headers = dict(answer.headers)
            return Response(answer.status, self.last_text, answer.headers)


@dataclass(frozen=True)
class Account:
    sid: str
    token: str = field(repr=False)  # never in logs or tracebacks
    api_base: str = "https://api.twilio.com"


def _twilio_message(text: str) -> str | None:
    """The message in Twilio's error body (legacy {"message"} or RFC 9457 {"detail"})."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    found = body.get("message") or body.get("detail") or body.get("title")
    return str(found) if found else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


async def create_message(
    session: aiohttp.ClientSession,
    account: Account,
    sender: str,
    to: str,
    body: str,
    media_urls: list[str],
    status_callback: str | None,
) -> SendResult:
    """POST one message. Twilio answering 5xx or 429, or not answering, is worth a retry;
    any other refusal is final and explained. Long text goes as one message (Twilio segments)."""
    transport = SessionHttpClient(session)
    client: Any = Client(
        account.sid, account.token, http_client=transport, environment=_NO_ENVIRONMENT
    )
    client.api.base_url = account.api_base
    options: dict[str, Any] = {"to": to, "from_": sender}
    if body:
        options["body"] = body
    if media_urls:
        options["media_url"] = media_urls
    if status_callback:
        options["status_callback"] = status_callback
    try:
        message = await client.messages.create_async(**options)
    except TwilioException as exc:
        status = int(getattr(exc, "status", 0) or 0)
        code = getattr(exc, "code", None)
        reason = explain(code, _twilio_message(transport.last_text))
        if status == 429 or status >= 500:
            log.warning("twilio_send_deferred", http_status=status, code=code)
            return SendResult(
                "failed",
                error=f"Twilio answered {status}: {reason}",
                retryable=True,
                retry_after=_retry_after(transport.last_headers),
            )
        log.info("twilio_send_refused", http_status=status, code=code)
        return SendResult("failed", error=reason)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("twilio_unreachable", error=type(exc).__name__)
        return SendResult(
            "failed", error=f"Twilio unreachable: {type(exc).__name__} {exc}", retryable=True
        )
    return SendResult("sent", external_id=str(message.sid))
