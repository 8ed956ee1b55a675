"""`hub up --demo`: an admin to log in with, a form to try, and a few conversations to look at."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from hub.auth.passwords import hash_password
from hub.auth.users import create_user
from hub.channels.base import InboundEvent, Sender
from hub.db import Database
from hub.inbox.ingest import ingest
from hub.models import User
from hub.settings import Settings

DEMO_EMAIL = "admin@demo.example.com"
PEOPLE = [
    (
        "Dilnoza Karimova",
        "+998 90 123 45 67",
        "dilnoza@example.com",
        "google",
        "cpc",
        "Do you deliver to Samarkand? Please call me after 5 pm.",
    ),
    (
        "Anvar Tursunov",
        "+998 93 555 12 34",
        None,
        "facebook",
        "social",
        "I would like a quote for 20 units.",
    ),
    (
        "Maria Silva",
        "+55 11 98765-4321",
        "maria@example.com",
        None,
        None,
        "Hello! Is the product available in Brazil?",
    ),
]


async def seed_demo(settings: Settings) -> tuple[Settings, str]:
    """Idempotent: running it again adds nothing twice; the admin gets a fresh password."""
    from hubcli.serve import with_demo_form

    settings = with_demo_form(settings)
    db = Database(settings.database_url)
    password = secrets.token_urlsafe(12)
    try:
        async with db.write() as session:
            user = await session.scalar(select(User).where(User.email == DEMO_EMAIL))
            if user is None:
                await create_user(session, DEMO_EMAIL, password, "admin", name="Demo Admin")
            else:
                user.password_hash = hash_password(password)
                user.active = True
        for number, (name, phone, email, utm_source, utm_medium, text) in enumerate(PEOPLE):
            event = InboundEvent(
                channel="demo",
                channel_type="form",
                external_id=f"demo-seed-{number}",
                kind="form",
                source="form",
                form_id="demo",
                sender=Sender(phones=(phone,), emails=(email,) if email else (), name=name),
                text=text,
                utm={"source": utm_source, "medium": utm_medium}
                if utm_source and utm_medium
                else {},
                meta={"form": {"name": name, "phone": phone, "message": text}},
            )
            await ingest(db, event, settings.default_region or "UZ")
    finally:
        await db.dispose()
    return settings, f"{DEMO_EMAIL} / {password}  (form to try: /forms/demo)"
