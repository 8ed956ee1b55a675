"""Pipelines: which funnel a new lead enters (its form's, its channel's, or the default)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hub.channels.base import InboundEvent
from hub.settings import PipelineConfig, Settings

# Keys of InboundEvent.meta that hub/leads/leads.py reads when the event opens a lead.
PIPELINE_META, STAGE_META = "lead_pipeline", "lead_stage"


def pipeline_named(settings: Settings, name: str) -> PipelineConfig:
    """The configured pipeline; a lead of one since removed from the configuration keeps its
    stage as its only stage, with the default lost reasons, so it can still be closed."""
    pipeline = settings.pipelines.get(name)
    if pipeline is not None:
        return pipeline
    return PipelineConfig(name, stages=(), lost_reasons=settings.leads.lost_reasons)


def default_pipeline(settings: Settings, channel: str, form_id: str | None) -> PipelineConfig:
    """The form's pipeline, else the channel's, else `[leads] pipeline`."""
    form = settings.forms.get(form_id) if form_id else None
    config = settings.channels.get(channel)
    name = (
        (form.pipeline if form is not None else None)
        or (config.pipeline if config is not None else None)
        or settings.leads.pipeline
    )
    return pipeline_named(settings, name)


def with_pipeline(event: InboundEvent, settings: Settings) -> InboundEvent:
    """The event carrying the pipeline (and its first stage) of the lead it may open."""
    if not event.opens_lead:
        return event
    pipeline = default_pipeline(settings, event.channel, event.form_id)
    meta: dict[str, Any] = {**event.meta, PIPELINE_META: pipeline.name}
    if pipeline.stages:
        meta[STAGE_META] = pipeline.stages[0]
    return replace(event, meta=meta)


def pipeline_to_dict(pipeline: PipelineConfig) -> dict[str, Any]:
    return {
        "name": pipeline.name,
        "stages": list(pipeline.stages),
        "statuses": ["open", "won", "lost"],
        "lost_reasons": list(pipeline.lost_reasons),
    }
