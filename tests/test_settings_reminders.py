"""Configuration of follow-ups, acknowledgements, re-engagement and notification channels."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hub.settings import FollowUpRule, load_settings
from tests.test_settings import problems_of, write

TELEGRAM = """
[channels.tg]
type = "telegram"
bot_token = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
webhook_secret = "secret_1"
acknowledge = "We got it"
"""


def test_follow_ups_acknowledgements_and_notification_channels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TELEGRAM
        + """
[leads]
acknowledge = "Thanks, we call soon"
reengage_after = "90d"
[[leads.follow_up]]
stage = "qualified"
after = "1d"
note = "Agree the offer"
[[leads.follow_up]]
stage = "won"
after = "30d"
[notifications]
telegram_channel = "tg"
[forms.callback]
acknowledge = "See you soon"
""",
    )
    settings = load_settings(path, environ={})
    leads = settings.leads
    assert leads.acknowledge == "Thanks, we call soon"
    assert leads.reengage_after == timedelta(days=90)
    assert leads.follow_up == (
        FollowUpRule("qualified", timedelta(days=1), "Agree the offer"),
        FollowUpRule("won", timedelta(days=30)),
    )
    assert settings.notifications.telegram_channel == "tg"
    assert settings.channels["tg"].get("acknowledge") == "We got it"
    assert settings.forms["callback"].acknowledge == "See you soon"
    assert load_settings(write(tmp_path, "", "empty.toml"), environ={}).leads.reengage_after == (
        timedelta(days=180)
    )
    off = write(tmp_path, '[leads]\nreengage_after = "off"\n', "off.toml")
    assert load_settings(off, environ={}).leads.reengage_after is None


def test_bad_rules_and_unknown_channels_are_named(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        TELEGRAM
        + """
[leads]
reengage_after = "half a year"
[[leads.follow_up]]
stage = "qualified"
after = "tomorrow"
[[leads.follow_up]]
after = "1d"
[[leads.follow_up]]
stage = "won"
after = "1d"
colour = "red"
[notifications]
telegram_channel = "nope"
sms_channel = "tg"
""",
    )
    text = "\n".join(problems)
    assert "leads.reengage_after: 'half a year' is not a duration" in text
    assert "leads.follow_up[1].after: 'tomorrow' is not a duration" in text
    assert "leads.follow_up[2]: missing required key 'stage'" in text
    assert "leads.follow_up[3]: unknown key 'colour'" in text
    assert "notifications.telegram_channel: no telegram channel 'nope'; configured: tg" in text
    assert "notifications.sms_channel: no twilio channel 'tg'; configured: none" in text
