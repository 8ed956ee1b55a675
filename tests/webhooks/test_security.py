"""The IP allowlist: /api and the inbox only for the listed networks; webhooks and forms open."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from hub.settings import ConfigError, SecurityConfig, load_settings
from tests.conftest import MakeClient
from webhooks.security import allowed


def networks(*cidrs: str) -> SecurityConfig:
    return SecurityConfig(ip_allowlist=tuple(ipaddress.ip_network(c) for c in cidrs))


async def test_outside_the_allowlist_gets_403_but_forms_and_webhooks_answer(
    make_client: MakeClient,
) -> None:
    client = await make_client(security=networks("10.0.0.0/8", "2001:db8::/32"))
    for path in ("/api/auth/login", "/api/openapi.json", "/api/conversations", "/", "/login"):
        response = await client.get(path)
        assert response.status == 403, path
        assert "127.0.0.1 is not in [security] ip_allowlist" in (await response.json())["error"]
    login = await client.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
    assert login.status == 403
    # Providers and website visitors are not on the allowlist: their routes answer as usual.
    form = await client.post("/forms/callback", json={"phone": "+998901234567"})
    assert form.status == 201
    webhook = await client.post("/webhooks/telegram/nope", json={})
    assert webhook.status == 404
    assert (await client.get("/healthz")).status in (200, 503)


async def test_inside_the_allowlist_answers(make_client: MakeClient) -> None:
    client = await make_client(security=networks("127.0.0.0/8"))
    assert (await client.get("/api/openapi.json")).status == 200
    assert (await client.get("/api/conversations")).status == 401  # on to the token check


def test_address_matching() -> None:
    nets = networks("10.0.0.0/8", "2001:db8::/32").ip_allowlist
    assert allowed("10.1.2.3", nets)
    assert allowed("::ffff:10.1.2.3", nets)  # IPv4 seen through a dual-stack socket
    assert allowed("2001:db8::1", nets)
    assert not allowed("11.0.0.1", nets)
    assert not allowed("unknown", nets)


def test_check_config_names_a_bad_cidr(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        '[security]\nip_allowlist = ["10.0.0.0/8", "10.0.0.1/8", "office", 7]\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("security.ip_allowlist[1]: '10.0.0.1/8' is not a network")
    assert "host bits set" in problems[0]
    assert problems[1].startswith("security.ip_allowlist[2]: 'office'")
    path.write_text('[security]\nip_allowlist = "10.0.0.0/8"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert caught.value.problems == ["security.ip_allowlist: must be a list, got '10.0.0.0/8'"]
    path.write_text('[security]\nip_allowlist = ["10.0.0.0/8", "::1"]\n', encoding="utf-8")
    loaded = load_settings(path, {}).security.ip_allowlist
    assert [str(n) for n in loaded] == ["10.0.0.0/8", "::1/128"]
