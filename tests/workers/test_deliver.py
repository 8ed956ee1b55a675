"""The deliver job on a real arq worker and a real Redis: sent, failed with a reason, retried."""

from __future__ import annotations

from typing import Any, ClassVar

from hub.channels.base import Channel, InboundRequest, OutboundMessage, SendResult
from hub.channels.registry import build_forms
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import TimelineItem
from hub.runtime import Runtime
from hub.settings import ChannelConfig, Settings
from tests.webhooks.test_api import seed
from workers.settings import make_worker, stop_worker


class RecordingChannel(Channel):
    """A provider double at the protocol boundary: records what it was asked to send."""

    type: ClassVar[str] = "recording"
    capabilities: ClassVar[frozenset[str]] = frozenset({"inbound", "outbound"})
    address_kind: ClassVar[str | None] = "phone"
    outcomes: ClassVar[list[SendResult]] = []
    sent: ClassVar[list[OutboundMessage]] = []

    def describe(self) -> str:
        return "records sends"

    async def send(self, message: OutboundMessage, client: Any) -> SendResult:
        self.sent.append(message)
        return self.outcomes.pop(0) if self.outcomes else SendResult("sent", external_id="X1")


async def queue_reply(db: Database, conversation_id: int, channel: str, text: str) -> int:
    async with db.write() as session:
        from hub.models import Conversation

        conversation = await session.get_one(Conversation, conversation_id)
        item = TimelineItem(
            conversation_id=conversation_id,
            contact_id=conversation.contact_id,
            channel=channel,
            channel_type="twilio",
            direction="out",
            kind="message",
            text=text,
            status="queued",
        )
        session.add(item)
        await session.flush()
        return item.id


async def run_worker(runtime: Runtime) -> None:
    worker = make_worker(runtime, burst=True, poll_delay=0.05)
    try:
        await worker.async_run()
    finally:
        await stop_worker(worker)


def runtime_with_recorder(settings: Settings) -> Runtime:
    runtime = Runtime.open(settings)
    runtime.channels["sms"] = RecordingChannel(ChannelConfig("sms", "recording", {}), settings)
    runtime.forms = build_forms(settings)
    return runtime


async def test_a_queued_reply_is_sent_once_even_when_enqueued_twice(
    settings: Settings, db: Database
) -> None:
    RecordingChannel.sent.clear()
    data = await seed(db)
    item_id = await queue_reply(db, data["sms"].conversation_id, "sms", "We will call you")
    runtime = runtime_with_recorder(settings)
    try:
        await runtime.enqueue("deliver", item_id, job_id=f"deliver:{item_id}")
        await runtime.enqueue("deliver", item_id, job_id=f"deliver:{item_id}")
        await run_worker(runtime)
    finally:
        await runtime.close()
    assert [m.to for m in RecordingChannel.sent] == ["+998901234567"]
    async with db.read() as session:
        item = await session.get_one(TimelineItem, item_id)
    assert (item.status, item.external_id, item.error) == ("sent", "X1", None)


async def test_transient_failure_retries_and_permanent_failure_keeps_the_reason(
    settings: Settings, db: Database
) -> None:
    RecordingChannel.sent.clear()
    RecordingChannel.outcomes[:] = [
        SendResult("failed", error="provider 503", retryable=True, retry_after=0.1),
        SendResult("sent", external_id="X2"),
        SendResult("failed", error="recipient opted out"),
    ]
    data = await seed(db)
    first = await queue_reply(db, data["sms"].conversation_id, "sms", "one")
    runtime = runtime_with_recorder(settings)
    try:
        await runtime.enqueue("deliver", first, job_id=f"deliver:{first}")
        await run_worker(runtime)
        second = await queue_reply(db, data["sms"].conversation_id, "sms", "two")
        await runtime.enqueue("deliver", second, job_id=f"deliver:{second}")
        await run_worker(runtime)
    finally:
        await runtime.close()
    async with db.read() as session:
        one = await session.get_one(TimelineItem, first)
        two = await session.get_one(TimelineItem, second)
    assert len(RecordingChannel.sent) == 3
    assert (one.status, one.external_id) == ("sent", "X2")
    assert (two.status, two.error) == ("failed", "recipient opted out")


async def test_a_channel_that_cannot_send_fails_the_item_with_the_reason(
    settings: Settings, db: Database
) -> None:
    request = InboundRequest(
        method="POST",
        path="/forms/callback",
        body=b'{"phone": "+998901234567"}',
        headers={"content-type": "application/json"},
    )
    (event,) = build_forms(settings)["callback"].parse(request)
    result = await ingest(db, event, "UZ")
    assert result.conversation_id is not None
    item_id = await queue_reply(db, result.conversation_id, "callback", "hello")
    runtime = Runtime.open(settings)
    try:
        await runtime.enqueue("deliver", item_id, job_id=f"deliver:{item_id}")
        await run_worker(runtime)
    finally:
        await runtime.close()
    async with db.read() as session:
        item = await session.get_one(TimelineItem, item_id)
    assert item.status == "failed"
    assert item.error == "channel 'callback' is not configured"
