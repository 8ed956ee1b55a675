"""/healthz names what is down; /metrics counts inbound events by outcome."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.test_utils import TestClient


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_ok(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_healthz_names_redis_when_it_is_down(make_client: Any) -> None:
    client = await make_client(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down")
    assert body["error"] == "redis not answering"


async def test_healthz_names_the_database_when_it_is_down(make_client: Any, tmp_path: Any) -> None:
    client = await make_client(
        database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/none"
    )
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"]["database"].startswith("down")
    assert body["checks"]["redis"] == "ok"


async def test_metrics_count_stored_duplicate_and_rejected(client: TestClient[Any, Any]) -> None:
    headers = {"Idempotency-Key": "metrics-test-0001"}
    for _ in range(2):
        await client.post("/forms/callback", json={"phone": "+998901234567"}, headers=headers)
    await client.post("/forms/callback", json={"phone": "1"})
    text = await (await client.get("/metrics")).text()
    for outcome in ("stored", "duplicate", "rejected"):
        assert (
            f'hub_inbound_events_total{{channel="callback",channel_type="form",outcome="{outcome}"}}'
            in text
        )
    assert "hub_outbound_messages_total" in text or "# HELP hub_outbound_messages_total" in text
    assert "hub_reminders_fired_total" in text
