"""The generic PBX channel: the HMAC signature, the contract's JSON events parsed into call events,
and, through the real app, the call state machine under out-of-order and repeated deliveries.
Shared helpers for the telephony acceptance test live here too."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.channels.base import InboundRequest, InvalidPayload
from hub.channels.pbx import Pbx
from hub.db import Database
from hub.inbox.calls import call_event_of, call_status
from hub.models import Contact, InboundReceipt, Lead, Reminder, TimelineItem
from hub.settings import ChannelConfig, ConfigError, Settings, load_settings
from tests.conftest import MakeClient, count

FIXTURES = Path(__file__).parents[1] / "fixtures" / "pbx"
SECRET = "7f3b0c9e5d2a4f6b8c1e0d9a7b6c5d4e"
Client = TestClient[Any, Any]


def pbx_event(name: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data | overrides


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pbx_config(name: str = "office") -> ChannelConfig:
    return ChannelConfig(name=name, type="pbx", values={"secret": SECRET})


def channel() -> Pbx:
    return Pbx(pbx_config(), Settings(default_region="UZ"))


def pbx_request(body: bytes, sig: str | None = None, name: str = "office") -> InboundRequest:
    headers = {"content-type": "application/json"}
    if sig is None:
        sig = signature(body)
    if sig:
        headers["x-hub-signature"] = sig
    return InboundRequest(method="POST", path=f"/webhooks/pbx/{name}", headers=headers, body=body)


def contract_case() -> Any:
    """The contract case (tests/channels/test_contract.py)."""
    from tests.channels.test_contract import Case

    genuine = json.dumps(pbx_event("ringing")).encode()
    return Case(
        build=channel,
        genuine=pbx_request(genuine),
        forged=pbx_request(genuine, signature(genuine, "another secret of 32 characters!")),
        malformed=pbx_request(b'{"event": "ringing"'),
    )


async def pbx_client(make_client: MakeClient, **overrides: Any) -> Client:
    client: Client = await make_client(channels={"office": pbx_config()}, **overrides)
    return client


async def post_pbx(client: Client, data: dict[str, Any] | bytes, sig: str | None = None) -> Any:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = {"Content-Type": "application/json"}
    sig = signature(body) if sig is None else sig
    if sig:
        headers["X-Hub-Signature"] = sig
    return await client.post("/webhooks/pbx/office", data=body, headers=headers)


async def call_item(db: Database, call_id: str) -> TimelineItem:
    async with db.read() as session:
        return (
            await session.scalars(select(TimelineItem).where(TimelineItem.external_id == call_id))
        ).one()


# --- the channel on its own -------------------------------------------------------------------


def test_signature_over_the_raw_body_verifies_and_anything_else_does_not() -> None:
    pbx = channel()
    body = json.dumps(pbx_event("ringing")).encode()
    assert pbx.verify(pbx_request(body))
    assert pbx.verify(pbx_request(body, signature(body).upper().replace("SHA256=", "sha256=")))
    for forged in (
        "",  # missing
        signature(body)[7:],  # no sha256= prefix
        "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),
        signature(body, "0" * 32),  # another secret
        signature(body + b" "),  # another body
        "sha256=zz",
        "sha256=\u00e9\u00e9",
    ):
        assert not pbx.verify(pbx_request(body, forged)), forged


def test_fixtures_parse_to_call_events_in_the_contract_words() -> None:
    pbx = channel()
    ringing, missed = (
        call_event_of(pbx.parse(pbx_request(json.dumps(pbx_event(n)).encode()))[0])
        for n in ("ringing", "missed")
    )
    assert ringing is not None and missed is not None
    assert (ringing.event, ringing.call_id, ringing.direction) == (
        "ringing",
        "1764064800.1042",
        "in",
    )
    assert (ringing.party, ringing.line) == ("+998901234567", "+998712000001")
    assert (missed.event, missed.reason, missed.provider_status) == (
        "missed",
        "no-answer",
        "NOANSWER",
    )
    (ended_event,) = pbx.parse(pbx_request(json.dumps(pbx_event("ended")).encode()))
    ended = call_event_of(ended_event)
    assert ended is not None and ended.answered and ended.duration == 95
    assert ended.comment == "asked for a quote, send by e-mail"
    assert ended_event.external_id == "1764068400.1077:ended"
    assert ended_event.kind == "call" and ended_event.source == "call"
    (out_event,) = pbx.parse(pbx_request(json.dumps(pbx_event("outbound_ended")).encode()))
    out = call_event_of(out_event)
    assert out is not None and (out.direction, out.party, out.line) == ("out", "0901234567", "201")
    assert not out_event.opens_lead  # our call is not their interest


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[1, 2]", None),
        (b"\xff\xfe", None),
        (json.dumps({"call_id": "1"}).encode(), "event"),
        (json.dumps(pbx_event("ringing", event="hold")).encode(), "event"),
        (json.dumps(pbx_event("ringing", call_id="")).encode(), "call_id"),
        (json.dumps(pbx_event("ringing", call_id="a b")).encode(), "call_id"),
        (json.dumps(pbx_event("ringing", call_id="x" * 121)).encode(), "call_id"),
        (json.dumps(pbx_event("ringing", direction="sideways")).encode(), "direction"),
        (json.dumps({"event": "ringing", "call_id": "1", "to": "1"}).encode(), "from"),
        (json.dumps(pbx_event("ringing", **{"from": ["+998"]})).encode(), "from"),
        (json.dumps(pbx_event("ringing", to="7" * 65)).encode(), "to"),
        (json.dumps(pbx_event("ended", duration=-1)).encode(), "duration"),
        (json.dumps(pbx_event("ended", duration="long")).encode(), "duration"),
        (json.dumps(pbx_event("ended", duration=True)).encode(), "duration"),
        (
            json.dumps(pbx_event("ended", recording_url="file:///etc/passwd")).encode(),
            "recording_url",
        ),
        (json.dumps(pbx_event("missed", reason="ASLEEP")).encode(), "reason"),
        (json.dumps(pbx_event("ringing", timestamp="yesterday")).encode(), "timestamp"),
        (json.dumps(pbx_event("ended", comment="x" * 2001)).encode(), "comment"),
    ],
)
def test_malformed_events_are_invalid_payloads_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        channel().parse(pbx_request(body))
    assert info.value.field == field and info.value.reason


def test_the_secret_is_required_and_long_enough(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text('[channels.office]\ntype = "pbx"\nsecret = "short"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert any("channels.office: secret: at least 16 characters" in p for p in info.value.problems)
    config.write_text('[channels.office]\ntype = "pbx"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    assert any("secret" in p for p in info.value.problems)


@pytest.mark.parametrize(
    ("events", "status"),
    [
        (["ringing"], "ringing"),
        (["ringing", "answered"], "answered"),
        (["ringing", "answered", "ended"], "ended"),
        (["ended", "answered", "ringing"], "ended"),  # all out of order
        (["answered", "missed"], "answered"),  # a missed leg of an answered call
        (["missed", "ringing"], "missed"),
        (["ringing", "ended"], "missed"),  # hung up in the queue
    ],
)
def test_the_status_is_a_function_of_the_events_not_their_order(
    events: list[str], status: str
) -> None:
    assert call_status([{"event": e} for e in events]) == status
    assert call_status([{"event": e} for e in reversed(events)]) == status
    assert call_status([{"event": "ringing"}, {"event": "ended", "answered": True}]) == "ended"


# --- through the real app ---------------------------------------------------------------------


async def test_bad_or_missing_signature_is_401_and_stores_nothing(
    make_client: MakeClient, db: Database
) -> None:
    client = await pbx_client(make_client)
    body = json.dumps(pbx_event("ringing")).encode()
    for sig in ("", "sha256=" + "0" * 64, signature(body, "wrong secret, 32 characters long")):
        response = await post_pbx(client, body, sig)
        assert response.status == 401
        assert "error" in await response.json()
    for model in (TimelineItem, Contact, Lead, Reminder, InboundReceipt):
        assert await count(db, model) == 0


async def test_malformed_signed_body_is_400_naming_the_field_and_stores_nothing(
    make_client: MakeClient, db: Database
) -> None:
    client = await pbx_client(make_client)
    response = await post_pbx(client, pbx_event("ringing", event="hold"))
    assert response.status == 400
    assert (await response.json())["field"] == "event"
    response = await post_pbx(client, b"not json")
    assert response.status == 400
    assert await count(db, TimelineItem) == 0 and await count(db, InboundReceipt) == 0
    response = await client.post("/webhooks/pbx/nowhere", data=b"{}")
    assert response.status == 404


async def test_out_of_order_and_repeated_events_give_one_item_in_its_final_state(
    make_client: MakeClient, db: Database
) -> None:
    client = await pbx_client(make_client)
    ended, answered, ringing = pbx_event("ended"), pbx_event("answered"), pbx_event("ringing")
    ringing["call_id"] = ended["call_id"]
    for data in (ended, ended, answered, ringing, answered, ended):
        response = await post_pbx(client, data)
        assert response.status == 200, await response.text()
        assert await response.json() == {"ok": True}
    assert await count(db, TimelineItem) == 1
    assert await count(db, InboundReceipt) == 3  # one per distinct event
    item = await call_item(db, "1764068400.1077")
    assert (item.kind, item.direction, item.status) == ("call", "in", "ended")
    assert [e["event"] for e in item.meta["events"]] == ["ended", "answered", "ringing"]
    assert item.meta["duration"] == 95 and item.meta["answered"] is True
    assert item.meta["recording_url"].endswith("1764068400.1077.wav")
    assert item.meta["comments"][0]["text"] == "asked for a quote, send by e-mail"
    assert item.text == "Incoming call, 1:35"
    async with db.read() as session:
        lead = (await session.scalars(select(Lead))).one()
    assert (lead.source, lead.dialled_number) == ("call", "+998712000001")
    assert await count(db, Reminder) == 0  # answered: nobody needs a callback


async def test_a_hidden_caller_id_is_a_call_without_a_phone(
    make_client: MakeClient, db: Database
) -> None:
    client = await pbx_client(make_client)
    for n in (1, 2):
        hidden = pbx_event("missed", call_id=f"anon.{n}", **{"from": "anonymous"})
        assert (await post_pbx(client, hidden)).status == 200
    assert await count(db, Contact) == 2  # two unknown people, not one "anonymous" contact
    assert await count(db, TimelineItem, TimelineItem.status == "missed") == 2
    assert await count(db, Reminder) == 0  # no number to call back


async def test_events_of_one_new_call_delivered_at_once_make_one_item_and_one_contact(
    make_client: MakeClient, db: Database
) -> None:
    client = await pbx_client(make_client)
    call_id = "1764068400.1077"
    events = [pbx_event(n, call_id=call_id) for n in ("ringing", "answered", "ended")] * 2
    responses = await asyncio.gather(*(post_pbx(client, data) for data in events))
    assert [r.status for r in responses] == [200] * len(events)
    assert await count(db, TimelineItem) == 1 and await count(db, Contact) == 1
    assert await count(db, Lead) == 1
    item = await call_item(db, call_id)
    assert item.status == "ended" and len(item.meta["events"]) == 3


SCRIPT = Path(__file__).parents[2] / "config" / "asterisk-hub-webhook.sh"


async def run_script(client: Client, *args: str, secret: str = SECRET) -> tuple[int, str]:
    """config/asterisk-hub-webhook.sh as a dialplan's System() runs it: real openssl and curl."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HUB_URL": str(client.make_url("/webhooks/pbx/office")),
        "HUB_PBX_SECRET": secret,
    }
    process = await asyncio.create_subprocess_exec(
        "sh", str(SCRIPT), *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await process.communicate()
    return int(process.returncode or 0), (out + err).decode()


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")), reason="curl, openssl")
async def test_the_asterisk_example_script_signs_and_posts_the_events(
    make_client: MakeClient, db: Database
) -> None:
    client = await pbx_client(make_client)
    # A forged caller ID cannot break out of the JSON: the script keeps digits and "+".
    forged = '+998901234567","direction":"out'
    assert await run_script(client, "ringing", "1764064800.7", forged, "712000001") == (
        0,
        '{"ok": true}',
    )
    status, _ = await run_script(
        client, "missed", "1764064800.7", forged, "712000001", "in", "0", "CANCEL"
    )
    assert status == 0
    item = await call_item(db, "1764064800.7")
    assert (item.direction, item.status, item.meta["missed_reason"]) == (
        "in",
        "missed",
        "abandoned",
    )
    assert item.meta["from"] == "+998901234567"
    status, output = await run_script(
        client,
        "ended",
        "1764064800.7",
        "+998901234567",
        "1",
        secret="wrong secret, 32 chars long!!",
    )
    assert status == 22 and "401" in output  # curl --fail: the hub refused it
    assert len((await call_item(db, "1764064800.7")).meta["events"]) == 2
