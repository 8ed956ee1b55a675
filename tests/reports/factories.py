"""Faker-made leads, users and logins for the pipeline, report, import and export tests."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from faker import Faker

from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import IngestResult, ingest
from hub.models import User
from tests.conftest import PASSWORD, auth, sign_in

Client = TestClient[Any, Any]
fake = Faker()
Faker.seed(10)


def uz_phone(n: int) -> str:
    """A valid Uzbek mobile number, distinct per n."""
    return f"+99890{n % 10_000_000:07d}"


async def form_lead(
    db: Database, n: int, form: str = "callback", utm_source: str | None = None, **utm: str
) -> IngestResult:
    event = InboundEvent(
        channel=form,
        channel_type="form",
        external_id=f"post:{form}:{n}",
        kind="form",
        source="form",
        form_id=form,
        sender=Sender(phones=(uz_phone(n),), name=fake.name()),
        text=fake.sentence(),
        utm={"source": utm_source, **utm} if utm_source else dict(utm),
    )
    return await ingest(db, event, "UZ")


async def missed_call_lead(db: Database, n: int, dialled: str, channel: str = "office") -> Any:
    """A missed call on an ad's phone number, as the telephony webhook stores it."""
    event = InboundEvent(
        channel=channel,
        channel_type="pbx",
        external_id=f"call:{n}",
        kind="call",
        source="call",
        sender=Sender(phones=(uz_phone(n),)),
        text="Missed call",
        meta={"dialled_number": dialled, "missed": True, "callback_now": True},
    )
    return await ingest(db, event, "UZ")


async def user(db: Database, role: str, email: str | None = None, **fields: Any) -> User:
    async with db.write() as session:
        created = await create_user(session, email or fake.unique.email(), PASSWORD, role)
        for key, value in fields.items():
            setattr(created, key, value)
        return created


async def login(client: Client, email: str) -> dict[str, str]:
    return auth(await sign_in(client, email))


async def logged_in(client: Client, db: Database, role: str) -> tuple[User, dict[str, str]]:
    someone = await user(db, role)
    return someone, await login(client, someone.email)
