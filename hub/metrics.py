"""Prometheus metrics the contract names, on one registry the /metrics endpoint renders."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The *_created series double every counter for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

REGISTRY = CollectorRegistry(auto_describe=True)

INBOUND_EVENTS = Counter(
    "hub_inbound_events_total",
    "Inbound provider events by outcome (stored, duplicate, rejected).",
    ["channel", "channel_type", "outcome"],
    registry=REGISTRY,
)
OUTBOUND_MESSAGES = Counter(
    "hub_outbound_messages_total",
    "Outbound messages by final delivery status.",
    ["channel", "status"],
    registry=REGISTRY,
)
REMINDERS_FIRED = Counter(
    "hub_reminders_fired_total", "Callback reminders fired.", registry=REGISTRY
)
INGEST_SECONDS = Histogram(
    "hub_ingest_seconds",
    "Time to commit one inbound event.",
    ["channel_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)


def render() -> bytes:
    return generate_latest(REGISTRY)
