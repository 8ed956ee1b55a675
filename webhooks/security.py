"""The optional IP allowlist ([security] ip_allowlist): the operator API and web inbox answer only
the listed networks; provider webhooks, website forms and /healthz stay open."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from hub.settings import IPNetwork
from webhooks.context import RUNTIME
from webhooks.responses import client_ip, error

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Called by providers and by website visitors from anywhere; each has its own verification.
OPEN_PREFIXES = ("/webhooks/", "/forms/")
OPEN_PATHS = frozenset({"/healthz"})


def allowed(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False  # no peer address (a Unix socket): refuse rather than guess
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return any(address in network for network in networks)


@web.middleware
async def ip_allowlist(request: web.Request, handler: Handler) -> web.StreamResponse:
    networks = request.app[RUNTIME].settings.security.ip_allowlist
    path = request.path
    if not networks or path.startswith(OPEN_PREFIXES) or path in OPEN_PATHS:
        return await handler(request)
    ip = client_ip(request)
    if allowed(ip, networks):
        return await handler(request)
    log.warning("ip_not_allowed", ip=ip, path=path)
    return error(403, f"your address {ip} is not in [security] ip_allowlist")
