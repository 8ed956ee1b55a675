"""The contract every registered channel type must pass. A new channel adds one case here:
a configuration, a request its provider really sends, and a request it must refuse."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from hub.channels.base import Channel, InboundEvent, InboundRequest, InvalidPayload
from hub.channels.registry import CHANNEL_TYPES, build_channels, build_forms
from hub.settings import FormConfig, Settings
from tests.channels.test_pbx import contract_case as pbx_case
from tests.channels.test_telegram import contract_case as telegram_case
from tests.channels.test_twilio import contract_case as twilio_case


@dataclass(frozen=True)
class Case:
    build: Callable[[], Channel]
    genuine: InboundRequest  # verifies and parses to at least one event
    forged: InboundRequest  # fails verify()
    malformed: InboundRequest  # verifies, but parse() raises InvalidPayload


def form_case() -> Case:
    settings = Settings(
        default_region="UZ",
        forms={
            "callback": FormConfig(id="callback", allowed_origins=("https://shop.example.com",))
        },
    )

    def request(body: bytes, origin: str = "https://shop.example.com") -> InboundRequest:
        return InboundRequest(
            method="POST",
            path="/forms/callback",
            body=body,
            headers={
                "content-type": "application/json",
                "origin": origin,
                "idempotency-key": "contract-0001",
            },
        )

    return Case(
        build=lambda: build_forms(settings)["callback"],
        genuine=request(json.dumps({"phone": "+998901234567", "name": "A"}).encode()),
        forged=request(b"{}", origin="https://evil.example.net"),
        malformed=request(b"{not json"),
    )


CASES: dict[str, Callable[[], Case]] = {
    "form": form_case,
    "telegram": telegram_case,
    "twilio": twilio_case,
    "pbx": pbx_case,
}


# Polled, not called by webhook: their contract is in their own tests (e-mail: test_email_*.py).
POLLING_TYPES = {"email"}


def test_every_registered_type_has_a_contract_case() -> None:
    assert set(CHANNEL_TYPES) - POLLING_TYPES == set(CASES)
    assert all("polling" in CHANNEL_TYPES[t].capabilities for t in POLLING_TYPES)


@pytest.fixture(params=sorted(set(CHANNEL_TYPES) - POLLING_TYPES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]()


def test_declares_type_capabilities_and_keys(case: Case) -> None:
    channel = case.build()
    assert CHANNEL_TYPES[channel.type] is type(channel)
    assert channel.capabilities <= {"inbound", "outbound", "attachments", "send_files", "polling"}
    assert channel.reject_status in (401, 403)
    assert channel.describe()
    assert not inspect.iscoroutinefunction(channel.verify)
    assert not inspect.iscoroutinefunction(channel.parse)
    assert inspect.iscoroutinefunction(channel.send)


def test_genuine_request_verifies_and_parses_to_frozen_events(case: Case) -> None:
    channel = case.build()
    assert channel.verify(case.genuine)
    events = channel.parse(case.genuine)
    assert events and all(isinstance(e, InboundEvent) for e in events)
    for event in events:
        assert event.channel == channel.name and event.channel_type == channel.type
        assert event.external_id  # the dedupe key
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.text = "changed"  # type: ignore[misc]


def test_parse_is_pure(case: Case) -> None:
    channel = case.build()
    assert channel.parse(case.genuine) == channel.parse(case.genuine)


def test_forged_request_fails_verification(case: Case) -> None:
    assert not case.build().verify(case.forged)


def test_malformed_body_is_invalid_payload(case: Case) -> None:
    channel = case.build()
    assert channel.verify(case.malformed)
    with pytest.raises(InvalidPayload) as info:
        channel.parse(case.malformed)
    assert info.value.reason


def test_ack_answers_a_status(case: Case) -> None:
    channel = case.build()
    answer = channel.ack(channel.parse(case.genuine))
    assert 200 <= answer.status < 300


def test_build_channels_builds_every_configured_channel() -> None:
    assert build_channels(Settings()) == {}
