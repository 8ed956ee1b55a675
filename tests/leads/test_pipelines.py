"""Pipelines in the configuration: stages, lost reasons, the default per form and channel, and
`hub check-config` naming every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.channels.base import InboundEvent, Sender
from hub.leads.pipelines import default_pipeline, with_pipeline
from hub.settings import (
    DEFAULT_LOST_REASONS,
    DEFAULT_STAGES,
    ConfigError,
    Settings,
    load_settings,
)

GOOD = """
[pipelines.sales]
stages = ["lead", "demo", "offer"]
lost_reasons = ["price", "timing"]
[pipelines.support]
stages = ["asked", "answered"]
[leads]
lost_reasons = ["no answer", "other"]
pipeline = "support"
[forms.spring]
pipeline = "sales"
[channels.tg]
type = "telegram"
bot_token = "123:abc"
webhook_secret = "s3cret"
pipeline = "sales"
"""


def load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "hub.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, {})


def test_pipelines_and_their_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, GOOD)
    assert settings.pipelines["default"].stages == DEFAULT_STAGES
    sales = settings.pipelines["sales"]
    assert sales.stages == ("lead", "demo", "offer") and sales.lost_reasons == ("price", "timing")
    support = settings.pipelines["support"]
    assert support.lost_reasons == ("no answer", "other")  # from [leads]
    assert default_pipeline(settings, "spring", "spring").name == "sales"
    assert default_pipeline(settings, "tg", None).name == "sales"
    assert default_pipeline(settings, "sms", None).name == "support"
    event = InboundEvent(channel="tg", channel_type="telegram", external_id="1", sender=Sender())
    routed = with_pipeline(event, settings)
    assert routed.meta == {"lead_pipeline": "sales", "lead_stage": "lead"}
    note = InboundEvent(
        channel="tg", channel_type="telegram", external_id="2", sender=Sender(), opens_lead=False
    )
    assert with_pipeline(note, settings) is note


def test_built_in_default_pipeline(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert list(settings.pipelines) == ["default"]
    assert settings.pipelines["default"].lost_reasons == DEFAULT_LOST_REASONS


def test_every_mistake_is_named(tmp_path: Path) -> None:
    bad = """
[pipelines.sales]
stages = ["new", "won", "new", 3]
colour = "red"
[pipelines.empty]
stages = []
[pipelines.nostages]
lost_reasons = ["x"]
[leads]
pipeline = "nope"
lost_reasons = "price"
[forms.spring]
pipeline = "ghost"
"""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, bad)
    problems = caught.value.problems
    expected = [
        "pipelines.sales: unknown key 'colour'",
        "pipelines.sales.stages: 'new' is listed twice",
        "pipelines.sales.stages: every stage must be a non-empty string, got 3",
        "pipelines.sales.stages: 'won' is a lead status, not a stage",
        "pipelines.empty.stages: needs at least one stage",
        "pipelines.nostages: missing required key 'stages'",
        "leads.lost_reasons: must be a list, got 'price'",
        "leads.pipeline: no pipeline 'nope'; one of default, empty, nostages, sales",
        "forms.spring.pipeline: no pipeline 'ghost'",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
