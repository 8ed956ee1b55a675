"""The Twilio channel on its own: signatures, Twilio's webhook payloads parsed into events,
configuration checks. Shared helpers for the other test_twilio_* modules live here too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator

from hub.channels.base import InboundRequest, InvalidPayload
from hub.channels.registry import build_channels
from hub.channels.twilio import Twilio
from hub.channels.twilio.errors import explain
from hub.inbox.status import StatusUpdate, status_update_of
from hub.settings import ChannelConfig, ConfigError, Settings, load_settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "twilio"
ACCOUNT_SID = "ACae3c3c9a1d6a4c0b8f9e2d7c5b4a3f21"
AUTH_TOKEN = "9f1c2e3d4b5a69788796a5b4c3d2e1f0"
PUBLIC_URL = "https://hub.example.com"
FORM = "application/x-www-form-urlencoded"


def payload(name: str, **overrides: str) -> dict[str, str]:
    """A fixture's form parameters, some replaced."""
    text = (FIXTURES / f"{name}.txt").read_text(encoding="utf-8").strip()
    return dict(parse_qsl(text, keep_blank_values=True)) | overrides


def twilio_config(name: str = "sms", **values: Any) -> ChannelConfig:
    defaults = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": "+15017122661",
        "whatsapp_from": "whatsapp:+14155238886",
        "api_base": "https://api.twilio.com",
    }
    return ChannelConfig(name=name, type="twilio", values=defaults | values)


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def twilio_request(
    kind: str,
    params: dict[str, str],
    *,
    channel: str = "sms",
    query: str = "",
    signature: str | None = None,
    signed_url: str | None = None,
) -> InboundRequest:
    """A request as the webhook route builds it, signed over public_url + path + query."""
    path = f"/webhooks/twilio/{channel}/{kind}"
    url = PUBLIC_URL + path + (f"?{query}" if query else "")
    if signature is None:
        signature = sign(signed_url or url, params)
    return InboundRequest(
        method="POST",
        path=path,
        headers={"content-type": FORM, "x-twilio-signature": signature},
        body=urlencode(params).encode(),
        query=dict(parse_qsl(query)),
        url=url,
    )


def channel(**values: Any) -> Twilio:
    settings = Settings(public_url=PUBLIC_URL, default_region="UZ")
    return Twilio(twilio_config(**values), settings)


def contract_case() -> Any:
    """The contract case (tests/channels/test_contract.py)."""
    from tests.channels.test_contract import Case

    sms = payload("sms")
    without_sid = {k: v for k, v in sms.items() if k not in ("MessageSid", "SmsSid")}
    return Case(
        build=lambda: build_channels(
            Settings(public_url=PUBLIC_URL, channels={"sms": twilio_config()})
        )["sms"],
        genuine=twilio_request("sms", sms),
        forged=twilio_request(
            "sms",
            sms | {"Body": "changed in transit"},
            signature=sign(PUBLIC_URL + "/webhooks/twilio/sms/sms", sms),
        ),
        malformed=twilio_request("sms", without_sid | {"SmsMessageSid": ""}),
    )


def test_an_sms_becomes_a_message_from_the_phone_with_the_dialled_number() -> None:
    (event,) = channel().parse(twilio_request("sms", payload("sms")))
    assert event.external_id == "SM0f8ec3f5c4d44d9a8b3b7f1e6a2c9d10"
    assert (event.kind, event.source, event.direction) == ("message", "sms", "in")
    assert event.sender.phones == ("+14155552671",)
    assert event.thread_key == "+14155552671"  # the reply goes back by SMS
    assert event.text == "Hi! Do you deliver to Oakland? I'd like to order 2 boxes."
    assert event.meta["to"] == event.meta["dialled_number"] == "+15017122661"
    assert event.meta["num_segments"] == 1
    assert event.meta["from_geo"] == {
        "city": "SAN FRANCISCO",
        "state": "CA",
        "zip": "94105",
        "country": "US",
    }
    assert event.attachments == ()


def test_a_whatsapp_message_keeps_the_profile_name_and_its_own_thread() -> None:
    (event,) = channel().parse(twilio_request("sms", payload("whatsapp")))
    assert event.source == "whatsapp"
    assert event.sender.phones == ("+14155552671",)  # the same person as the SMS above
    assert event.sender.name == "Dilnoza"
    assert event.thread_key == "whatsapp:+14155552671"
    assert event.meta["dialled_number"] == "+14155238886"
    assert event.meta["to"] == "whatsapp:+14155238886"
    assert event.meta["wa_id"] == "14155552671"


def test_a_whatsapp_location_is_kept_in_meta() -> None:
    (event,) = channel().parse(twilio_request("sms", payload("whatsapp_location")))
    assert event.text == ""
    assert event.meta["location"] == {
        "latitude": 41.311081,
        "longitude": 69.240562,
        "address": "Amir Temur Square, Tashkent",
        "label": "Our shop",
    }
    assert event.meta["message_type"] == "location"


def test_mms_media_become_attachments_with_their_twilio_urls() -> None:
    (event,) = channel().parse(twilio_request("sms", payload("mms")))
    first, second = event.attachments
    assert first.content_type == "image/jpeg"
    assert first.url is not None and first.url.startswith("https://api.twilio.com/2010-04-01/")
    assert first.ref == "ME27c5b2d8a0e94f6c9e1b3d5f7a9c0e12"
    assert first.name == "ME27c5b2d8a0e94f6c9e1b3d5f7a9c0e12.jpg"
    assert (second.content_type, second.name[-4:]) == ("application/pdf", ".pdf")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"NumMedia": "two"}, "NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0"),
        ({"From": ""}, "From"),
        ({"MessageSid": ""}, "MessageSid"),
    ],
)
def test_a_broken_message_is_invalid_and_names_the_field(
    changes: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidPayload) as info:
        channel().parse(twilio_request("sms", payload("sms") | changes))
    assert reason in info.value.reason


def test_a_body_that_is_not_a_twilio_form_is_invalid() -> None:
    request = InboundRequest(
        method="POST",
        path="/webhooks/twilio/sms/sms",
        headers={"content-type": "application/json"},
        body=b"{}",
        url=PUBLIC_URL + "/webhooks/twilio/sms/sms",
    )
    with pytest.raises(InvalidPayload, match="application/x-www-form-urlencoded"):
        channel().parse(request)


def test_an_unknown_sub_path_names_the_ones_that_exist() -> None:
    with pytest.raises(InvalidPayload, match=r"/webhooks/twilio/sms/status and calls to .*/voice"):
        channel().parse(twilio_request("fax", payload("sms")))


def test_signature_is_checked_over_the_public_url_and_every_parameter() -> None:
    twilio = channel()
    params = payload("sms")
    assert twilio.verify(twilio_request("sms", params))
    assert not twilio.verify(twilio_request("sms", params, signature=""))
    assert not twilio.verify(twilio_request("sms", params, signature="bm90IGEgc2lnbmF0dXJl"))
    other_url = "https://elsewhere.example.com/webhooks/twilio/sms/sms"
    assert not twilio.verify(twilio_request("sms", params, signed_url=other_url))
    wrong_token = sign(PUBLIC_URL + "/webhooks/twilio/sms/sms", params, token="0" * 32)
    assert not twilio.verify(twilio_request("sms", params, signature=wrong_token))
    # The query string is part of what Twilio signs (our status callback URL carries one).
    query_signed = twilio_request("status", payload("status_sent"), query="item=7")
    assert twilio.verify(query_signed)
    assert not twilio.verify(
        replace(query_signed, url=query_signed.url.replace("item=7", "item=8"))
    )


def test_a_signed_body_that_is_not_a_form_does_not_verify() -> None:
    url = PUBLIC_URL + "/webhooks/twilio/sms/sms"
    request = InboundRequest(
        method="POST",
        path="/webhooks/twilio/sms/sms",
        headers={"content-type": "application/json", "x-twilio-signature": sign(url, {})},
        body=b'{"MessageSid": "SM1"}',
        url=url,
    )
    assert not channel().verify(request)


def test_the_answer_is_empty_twiml() -> None:
    answer = channel().ack([])
    assert (answer.status, answer.content_type) == (200, "text/xml")
    assert answer.body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def test_a_status_callback_is_a_delivery_report_keyed_by_sid_and_status() -> None:
    (event,) = channel().parse(
        twilio_request("status", payload("status_undelivered"), query="item=42")
    )
    report = status_update_of(event)
    assert event.external_id == "status:SM9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a:undelivered"
    assert (event.kind, event.opens_lead) == ("event", False)
    assert report == StatusUpdate(
        status="failed",
        message_id="SM9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a",
        item_id=42,
        error="the recipient's phone is unreachable (switched off or out of coverage) "
        "(Twilio 30003)",
        details=(("provider_status", "undelivered"), ("error_code", "30003")),
    )


def test_queued_and_sending_reports_add_nothing() -> None:
    params = payload("status_sent", MessageStatus="sending", SmsStatus="sending")
    assert channel().parse(twilio_request("status", params)) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("63016", "outside WhatsApp's 24-hour window"),
        ("21610", "opted out"),
        ("30005", "does not exist"),
        ("30007", "spam"),
        ("21211", "not a valid phone number"),
        ("99999", "Twilio 99999"),
    ],
)
def test_error_codes_are_explained_in_words(code: str, words: str) -> None:
    assert words in explain(code)


def test_configuration_names_what_to_fix(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        """
[channels.sms]
type = "twilio"
account_sid = "SK123"
auth_token = "env:TWILIO_TOKEN"
from_number = "whatsapp:+15550001111"
whatsapp_from = "+1 555"
api_base = "ftp://api.twilio.com"
"""
    )
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    problems = "\n".join(info.value.problems)
    assert "channels.sms.auth_token: environment variable TWILIO_TOKEN is not set" in problems
    assert "account_sid: 'SK123' is not an Account SID" in problems
    assert "put WhatsApp senders in whatsapp_from" in problems
    assert "whatsapp_from: '+1 555'" in problems
    assert "api_base: 'ftp://api.twilio.com'" in problems


def test_a_good_configuration_loads_with_the_default_api_base(tmp_path: Path) -> None:
    config = tmp_path / "hub.toml"
    config.write_text(
        f"""
[channels.sms]
type = "twilio"
account_sid = "{ACCOUNT_SID}"
auth_token = "env:TWILIO_TOKEN"
from_number = "+15017122661"
"""
    )
    settings = load_settings(config, environ={"TWILIO_TOKEN": AUTH_TOKEN})
    built = build_channels(settings)["sms"]
    assert isinstance(built, Twilio)
    assert built.account.api_base == "https://api.twilio.com"
    assert built.whatsapp_from is None
    assert AUTH_TOKEN not in built.describe()
