"""The provider webhook route every channel shares: 404 for unknown channels, the channel's
own rejection status for a bad secret (nothing stored), 400 for a bad body, once-only storage."""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from hub.channels.base import (
    Channel,
    InboundEvent,
    InboundRequest,
    InvalidPayload,
    ProviderAnswer,
    Sender,
)
from hub.db import Database
from hub.models import TimelineItem
from hub.settings import ChannelConfig
from tests.conftest import count
from webhooks.context import RUNTIME


class EchoChannel(Channel):
    """A minimal webhook channel: a shared-secret header and a JSON body {id, from, text}."""

    type: ClassVar[str] = "echo"
    capabilities: ClassVar[frozenset[str]] = frozenset({"inbound"})

    def describe(self) -> str:
        return "echo test channel"

    def verify(self, request: InboundRequest) -> bool:
        return hmac.compare_digest(request.header("x-secret"), "s3cret")

    def parse(self, request: InboundRequest) -> list[InboundEvent]:
        try:
            data = json.loads(request.body)
            return [
                InboundEvent(
                    channel=self.name,
                    channel_type=self.type,
                    external_id=str(data["id"]),
                    source="sms",
                    sender=Sender(phones=(data["from"],)),
                    text=data["text"],
                    meta={"url": request.url},
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidPayload(f"not an echo update: {exc}") from None

    def ack(self, events: Sequence[InboundEvent]) -> ProviderAnswer:
        return ProviderAnswer(200, b"<Response/>", "text/xml")


async def test_webhook_route(make_client: Any, db: Database) -> None:
    client = await make_client(public_url="https://hub.example.com")
    runtime = client.server.app[RUNTIME]
    runtime.channels["e1"] = EchoChannel(ChannelConfig("e1", "echo", {}), runtime.settings)
    body = json.dumps({"id": 7, "from": "+998901234567", "text": "salom"})
    good = {"X-Secret": "s3cret", "Content-Type": "application/json"}

    missing = await client.post("/webhooks/echo/nope", data=body, headers=good)
    assert missing.status == 404 and "nope" in (await missing.json())["error"]
    wrong_type = await client.post("/webhooks/telegram/e1", data=body, headers=good)
    assert wrong_type.status == 404
    forged = await client.post("/webhooks/echo/e1", data=body, headers={"X-Secret": "guess"})
    assert forged.status == 401
    malformed = await client.post("/webhooks/echo/e1", data=b"{", headers=good)
    assert malformed.status == 400 and "not an echo update" in (await malformed.json())["error"]
    assert await count(db, TimelineItem) == 0

    for _ in range(3):  # the provider redelivers
        ok = await client.post("/webhooks/echo/e1/sub/path?x=1", data=body, headers=good)
        assert ok.status == 200 and await ok.text() == "<Response/>"
        assert ok.content_type == "text/xml"
    assert await count(db, TimelineItem) == 1
    async with db.read() as session:
        item = await session.get_one(TimelineItem, 1)
    assert item.meta["url"] == "https://hub.example.com/webhooks/echo/e1/sub/path?x=1"
    metrics = await (await client.get("/metrics")).text()
    assert (
        'hub_inbound_events_total{channel="e1",channel_type="echo",outcome="duplicate"} 2.0'
        in metrics
    )
