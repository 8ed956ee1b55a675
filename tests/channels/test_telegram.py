"""The Telegram channel's pure half: secret check, real Update payloads to events, config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.channels.base import InboundEvent, InboundRequest, InvalidPayload
from hub.channels.registry import build_channels
from hub.channels.telegram import Telegram
from hub.channels.telegram.callbacks import (
    HANDLERS,
    ButtonPress,
    button_handler,
    callback_data,
    split_callback_data,
)
from hub.channels.telegram.outbound import MAX_TEXT, split_text
from hub.settings import ChannelConfig, ConfigError, Settings, load_settings
from tests.conftest import FIXTURES

TOKEN = "7000000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET = "hub-webhook-secret_01"
USER_ID = "123456789"


def config(**values: Any) -> ChannelConfig:
    return ChannelConfig("tg", "telegram", {"bot_token": TOKEN, "webhook_secret": SECRET} | values)


def channel(**values: Any) -> Telegram:
    settings = Settings(default_region="UZ", channels={"tg": config(**values)})
    built = build_channels(settings)["tg"]
    assert isinstance(built, Telegram)
    return built


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "telegram" / f"{name}.json").read_text())
    return data


def request(body: bytes | dict[str, Any], secret: str | None = SECRET) -> InboundRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    return InboundRequest(method="POST", path="/webhooks/telegram/tg", headers=headers, body=raw)


def parse(name: str) -> list[InboundEvent]:
    return channel().parse(request(payload(name)))


def contract_case() -> Any:
    from tests.channels.test_contract import Case  # that module imports this one for its CASES

    return Case(
        build=channel,
        genuine=request(payload("text")),
        forged=request(payload("text"), secret="not-the-secret"),
        malformed=request(b'{"update_id": 1, "message": '),
    )


# --- verification ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "hub-webhook-secret_02", SECRET + "x", SECRET[:-1]])
def test_a_missing_or_wrong_secret_is_refused_with_401(secret: str | None) -> None:
    tg = channel()
    assert not tg.verify(request(payload("text"), secret=secret))
    assert tg.reject_status == 401


def test_the_configured_secret_verifies() -> None:
    assert channel().verify(request(payload("text")))


# --- messages ---------------------------------------------------------------------------------


def test_text_message_names_the_user_by_id_and_threads_by_chat() -> None:
    (event,) = parse("text")
    assert event.external_id == "123456789:101"  # chat id + message id
    assert event.text == "Salom! Do you deliver to Tashkent?"
    assert event.sender.telegram_id == USER_ID
    assert event.sender.telegram_username == "dilnoza_k"
    assert event.sender.name == "Dilnoza Karimova"
    assert event.thread_key == USER_ID and event.source == "telegram"
    assert event.occurred_at == datetime(2024, 11, 25, 10, 20, tzinfo=UTC)
    assert event.proven_phones == () and event.revises is None
    assert event.meta["telegram"] == {"chat_id": 123456789, "message_id": 101}


def test_photo_keeps_the_largest_size_and_the_caption() -> None:
    (event,) = parse("photo_caption")
    assert event.text == "This sofa, in grey"
    (photo,) = event.attachments
    assert photo.ref == "AgACAgIAAxkBAAIBZmdEAAFr0largeAAdQQ"
    assert (photo.content_type, photo.size) == ("image/jpeg", 85312)
    assert event.meta["media"] == "photo"


@pytest.mark.parametrize(
    ("name", "kind", "file_name", "content_type", "text"),
    [
        ("document", "document", "invoice-2024-11.pdf", "application/pdf", ""),
        ("voice", "voice", "voice.ogg", "audio/ogg", ""),
        ("video", "video", "sofa.mp4", "video/mp4", "How it folds"),
    ],
)
def test_files_become_attachments_with_the_file_id(
    name: str, kind: str, file_name: str, content_type: str, text: str
) -> None:
    (event,) = parse(name)
    (attachment,) = event.attachments
    assert (attachment.name, attachment.content_type) == (file_name, content_type)
    assert attachment.ref and attachment.ref == payload(name)["message"][kind]["file_id"]
    assert event.meta["media"] == kind and event.text == text


def test_voice_keeps_its_duration() -> None:
    (event,) = parse("voice")
    assert event.meta["duration"] == 7


def test_sticker_is_a_placeholder_text() -> None:
    (event,) = parse("sticker")
    assert event.text == "[sticker 😀]" and event.attachments == ()
    assert event.meta["sticker"] == {"emoji": "😀", "set_name": "HotCherry"}


def test_location_is_text_and_meta() -> None:
    (event,) = parse("location")
    assert event.text == "[location 41.311081, 69.240562]"
    assert event.meta["location"] == {"latitude": 41.311081, "longitude": 69.240562}


def test_a_share_of_ones_own_contact_proves_the_phone() -> None:
    (event,) = parse("contact_own")
    assert event.proven_phones == ("+998901234567",)  # Telegram omits the '+'
    assert event.sender.phones == ()  # never a mere claim: proof goes its own way
    assert event.meta["contact"]["user_id"] == USER_ID


def test_a_shared_contact_of_someone_else_is_only_a_card() -> None:
    (event,) = parse("contact_foreign")
    assert event.proven_phones == () and event.sender.phones == ()
    assert event.text == "[contact Aziz +998935554433]"
    assert event.meta["contact"] == {
        "phone_number": "+998935554433",
        "name": "Aziz",
        "user_id": None,
    }


def test_a_contact_of_another_user_id_proves_nothing() -> None:
    data = payload("contact_own")
    data["message"]["contact"]["user_id"] = 987654321
    (event,) = channel().parse(request(data))
    assert event.proven_phones == ()


def test_an_edit_is_its_own_event_revising_the_message() -> None:
    (event,) = parse("edited_message")
    assert event.external_id == "update:815390010"  # the edit itself dedupes by update id
    assert event.revises == "123456789:101"
    assert event.text == "Salom! Do you deliver to Samarkand?"
    assert event.occurred_at == datetime(2024, 11, 25, 10, 29, tzinfo=UTC)


def test_service_updates_are_acknowledged_and_store_nothing() -> None:
    tg = channel()
    req = request(payload("my_chat_member"))
    assert tg.verify(req) and tg.parse(req) == []
    assert tg.ack([]).status == 200 and tg.ack([]).body == b""


def test_service_messages_and_channel_posts_store_nothing() -> None:
    joined = payload("text")
    del joined["message"]["text"]
    joined["message"]["new_chat_members"] = [joined["message"]["from"]]
    assert channel().parse(request(joined)) == []
    post = payload("text")
    del post["message"]["from"]
    assert channel().parse(request(post)) == []


def test_unrenderable_content_is_a_placeholder() -> None:
    data = payload("text")
    del data["message"]["text"]
    data["message"]["dice"] = {"emoji": "🎲", "value": 4}
    (event,) = channel().parse(request(data))
    assert event.text == "[dice]"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe", b"[1, 2]", b'"update"', b"{}", b'{"update_id": "x"}'],
)
def test_a_body_that_is_not_an_update_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidPayload) as info:
        channel().parse(request(body))
    assert info.value.reason


def test_parse_is_pure_for_every_fixture() -> None:
    tg = channel()
    for path in sorted((FIXTURES / "telegram").glob("*.json")):
        req = request(path.read_bytes())
        assert tg.parse(req) == tg.parse(req), path.name


# --- hub buttons ------------------------------------------------------------------------------


@pytest.fixture
def presses() -> Iterator[list[ButtonPress]]:
    seen: list[ButtonPress] = []

    @button_handler("test-reminder")
    def record(press: ButtonPress) -> list[InboundEvent]:
        seen.append(press)
        return []

    yield seen
    del HANDLERS["test-reminder"]


def test_a_hub_button_is_routed_to_its_handler(presses: list[ButtonPress]) -> None:
    data = payload("callback_query")
    data["callback_query"]["data"] = callback_data("test-reminder", "42", "done")
    assert channel().parse(request(data)) == []
    (press,) = presses
    assert (press.handler, press.args) == ("test-reminder", ("42", "done"))
    assert (press.user_id, press.chat_id, press.message_id) == (USER_ID, USER_ID, 110)
    assert press.query_id == "530413251285716870" and press.channel == "tg"


def test_unknown_and_foreign_buttons_are_acknowledged_and_ignored(
    presses: list[ButtonPress],
) -> None:
    for data in ("hub:nobody-owns-this:1", "someone-else:1", "", "hub:"):
        body = payload("callback_query")
        body["callback_query"]["data"] = data
        assert channel().parse(request(body)) == []
    assert presses == []


def test_callback_data_round_trips_and_respects_the_64_byte_limit() -> None:
    assert split_callback_data(callback_data("reminder", "42", "snooze", "15")) == (
        "reminder",
        ("42", "snooze", "15"),
    )
    assert split_callback_data("other:reminder:1") is None
    with pytest.raises(ValueError, match="64 bytes"):
        callback_data("reminder", "x" * 60)


def test_a_handler_name_is_registered_once(presses: list[ButtonPress]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        button_handler("test-reminder")(lambda press: [])


# --- configuration and outbound helpers -----------------------------------------------------


def write_config(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[channels.tg]\ntype = "telegram"\n{table}\n', encoding="utf-8")
    return path


def test_configuration_reads_secrets_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'bot_token = "env:TG_TOKEN"\nwebhook_secret = "env:TG_SECRET"')
    settings = load_settings(path, {"TG_TOKEN": TOKEN, "TG_SECRET": SECRET})
    tg = build_channels(settings)["tg"]
    assert isinstance(tg, Telegram)
    assert tg.api_base == "https://api.telegram.org"
    assert tg.describe() == "telegram bot 7000000001 via https://api.telegram.org"
    assert TOKEN not in tg.describe()


def test_configuration_problems_name_the_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'bot_token = "not-a-token"\nwebhook_secret = "has spaces!"\napi_base = "ftp://x"',
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    problems = "\n".join(info.value.problems)
    assert "channels.tg: bot_token: not a bot token" in problems
    assert "channels.tg: webhook_secret: 1 to 256 characters" in problems
    assert "channels.tg: api_base: 'ftp://x' is not an http(s) URL" in problems
    with pytest.raises(ConfigError) as missing:
        load_settings(write_config(tmp_path, ""), {})
    assert "channels.tg: missing required key 'bot_token'" in missing.value.problems
    assert "channels.tg: missing required key 'webhook_secret'" in missing.value.problems


def test_long_texts_split_at_word_breaks_within_the_limit() -> None:
    assert split_text("short") == ["short"]
    assert split_text("") == [""]
    words = " ".join(["word"] * 2000)  # 9999 characters
    parts = split_text(words)
    assert len(parts) == 3 and all(len(p) <= MAX_TEXT for p in parts)
    assert " ".join(parts) == words
    solid = "x" * (MAX_TEXT + 10)
    assert split_text(solid) == ["x" * MAX_TEXT, "x" * 10]
