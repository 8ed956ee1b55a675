"""Typed keys for what the aiohttp app holds."""

from __future__ import annotations

from aiohttp import web

from hub.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
