"""The OpenAPI document matches the code: every /api route is in it (and nothing else), and
schemathesis, run against the live app with an admin token, finds no server error and no answer
that breaks the schema."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from hub.auth.passwords import hash_password
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import User
from tests.conftest import PASSWORD
from webhooks.openapi import SPEC

Client = TestClient[Any, Any]
METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}


def api_routes(client: Client) -> set[tuple[str, str]]:
    routes = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/") and route.method in METHODS:
            routes.add((route.method.lower(), path))
    return routes


def spec_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, item in SPEC["paths"].items() for method in item}


async def test_every_api_route_is_in_the_spec_and_nothing_else(client: Client) -> None:
    registered = api_routes(client)
    assert ("patch", "/api/conversations/{conversation_id}") in registered
    missing = registered - spec_routes()
    assert not missing, f"add these routes to webhooks/openapi.py: {sorted(missing)}"
    stale = spec_routes() - registered
    assert not stale, f"webhooks/openapi.py describes routes that do not exist: {sorted(stale)}"
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            expected = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert names == expected, (method, path)


async def test_spec_is_served_without_a_token(client: Client) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    body = await response.json()
    assert body["openapi"] == "3.1.0" and "/api/audit" in body["paths"]


async def test_schemathesis_finds_no_server_error(
    client: Client, db: Database, tmp_path: Path
) -> None:
    # An id fuzzing will not stumble on, so the run cannot revoke or demote its own admin.
    async with db.write() as session:
        session.add(
            User(
                id=987_654,
                email="root@example.com",
                name="root",
                role="admin",
                password_hash=hash_password(PASSWORD),
            )
        )
    for n in range(3):
        await ingest(
            db,
            InboundEvent(
                channel="sms",
                channel_type="twilio",
                external_id=f"SM{n}",
                source="sms",
                sender=Sender(phones=(f"+99890123456{n}",), name=f"Client {n}"),
                text="hello",
            ),
            "UZ",
        )
    login = await client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    )
    token = (await login.json())["token"]
    # Changing, deactivating or signing out a user can hit the run's own admin (schemathesis
    # follows the ids GET /api/users returns), so those operations get a run of their own, last.
    own_admin = "^/api/users/[{]user_id[}]"
    await schemathesis(client, token, tmp_path, "--exclude-path-regex", own_admin)
    await schemathesis(client, token, tmp_path, "--include-path-regex", own_admin)


async def schemathesis(client: Client, token: str, cwd: Path, *selection: str) -> None:
    """The schemathesis CLI in a subprocess (its caches go to cwd), while this event loop
    serves the app it calls."""
    binary = Path(sys.executable).parent / "schemathesis"
    process = await asyncio.create_subprocess_exec(
        str(binary),
        "run",
        str(client.make_url("/api/openapi.json")),
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        # The event stream never ends; logging out would end the run's own session.
        "--exclude-path",
        "/api/events",
        "--exclude-path",
        "/api/auth/logout",
        *selection,
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-20000:]
    assert "Authentication failed" not in text, text[-9000:]
