"""Identity matching: the phones, e-mails and accounts of an event find (or make) one contact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, update

from hub.channels.base import Sender
from hub.db import LostRace
from hub.leads.emails import normalize_email
from hub.leads.merge import MergeError, merge_into
from hub.leads.phones import normalize_phone
from hub.models import CONTACTS, IDENTITIES, SUGGESTIONS, Identity, utcnow
from hub.sql import insert_ignore

# Which claim decides the contact when an event's identities point at different people:
# provider accounts first (they cannot be typed by someone else), then phones, then e-mail.
PRIORITY = {"telegram": 0, "phone": 1, "email": 2}
FIND_IDENTITIES = select(
    IDENTITIES.c.id,
    IDENTITIES.c.contact_id,
    IDENTITIES.c.kind,
    IDENTITIES.c.value,
    IDENTITIES.c.meta,
).where(IDENTITIES.c.value.in_(bindparam("values", expanding=True)))
INSERT_CONTACT = insert(CONTACTS).returning(CONTACTS.c.id)


@dataclass(frozen=True)
class Claim:
    kind: str  # phone | email | telegram
    value: str  # the matching form: E.164, lower-case e-mail, account id; as written if invalid
    raw: str
    valid: bool = True
    meta: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Match:
    contact_id: int
    created: bool
    duplicates: tuple[int, ...]  # other contacts this event also claimed; never merged here


def phone_claim(raw: str, region: str | None) -> Claim:
    e164 = normalize_phone(raw, region)
    if e164 is None:
        # Kept exactly as written: a wrong guess would attach someone else's number.
        return Claim("phone", " ".join(raw.split())[:254], raw[:254], valid=False)
    return Claim("phone", e164, raw[:254])


def claims_of(sender: Sender, region: str | None) -> list[Claim]:
    claims: list[Claim] = []
    if sender.telegram_id:
        meta = (("username", sender.telegram_username),) if sender.telegram_username else ()
        claims.append(
            Claim("telegram", str(sender.telegram_id), str(sender.telegram_id), True, meta)
        )
    claims.extend(phone_claim(p, region) for p in sender.phones if p.strip())
    for raw in sender.emails:
        email = normalize_email(raw)
        if email is not None:
            claims.append(Claim("email", email, raw[:254]))
        elif raw.strip():
            claims.append(Claim("email", raw.strip().lower()[:254], raw[:254], valid=False))
    unique: dict[tuple[str, str], Claim] = {}
    for claim in claims:
        unique.setdefault((claim.kind, claim.value), claim)
    return sorted(unique.values(), key=lambda c: PRIORITY[c.kind])


def add_identity(conn: Connection, contact_id: int, claim: Claim) -> bool:
    """Attach an identity unless it exists; True when it was added."""
    new_id = insert_ignore(
        conn,
        IDENTITIES,
        {
            "contact_id": contact_id,
            "kind": claim.kind,
            "value": claim.value,
            "raw": claim.raw,
            "valid": claim.valid,
            "meta": dict(claim.meta),
        },
        ["kind", "value"],
    )
    return new_id is not None


def suggest_duplicate(conn: Connection, contact_id: int, other_id: int, reason: str) -> None:
    low, high = sorted((contact_id, other_id))
    insert_ignore(
        conn,
        SUGGESTIONS,
        {"contact_id": low, "other_id": high, "reason": reason, "status": "open"},
        ["contact_id", "other_id"],
    )


@dataclass(frozen=True)
class Found:
    id: int
    contact_id: int
    meta: dict[str, Any]


def find_identities(conn: Connection, claims: list[Claim]) -> dict[tuple[str, str], Found]:
    if not claims:
        return {}
    keys = {(c.kind, c.value) for c in claims}
    rows = conn.execute(FIND_IDENTITIES, {"values": sorted({c.value for c in claims})})
    return {
        (r.kind, r.value): Found(r.id, r.contact_id, r.meta or {})
        for r in rows
        if (r.kind, r.value) in keys
    }


def match_contact(conn: Connection, sender: Sender, region: str | None) -> Match:
    """Find the sender's contact by any identity, or create it; attach the new identities.

    When the claims point at two different contacts, the event joins the contact of the
    strongest claim and a duplicate suggestion is recorded: anyone can type anyone's phone
    into a form, so only an operator (or provider proof) merges people.
    """
    claims = claims_of(sender, region)
    found = find_identities(conn, claims)
    owners: list[int] = []
    for claim in claims:
        identity = found.get((claim.kind, claim.value))
        if identity is not None and identity.contact_id not in owners:
            owners.append(identity.contact_id)
    created = not owners
    if created:
        now = utcnow()
        values: dict[str, Any] = {
            "name": sender.name,
            "company": sender.company,
            "tags": [],
            "custom_fields": {},
            "created_at": now,
            "updated_at": now,
        }
        contact_id = int(conn.execute(INSERT_CONTACT, values).scalar_one())
    else:
        contact_id = owners[0]
    for other in owners[1:]:
        shared = [
            f"{c.kind} {c.value}"
            for c in claims
            if (i := found.get((c.kind, c.value))) is not None and i.contact_id == other
        ]
        suggest_duplicate(conn, contact_id, other, f"one message also claimed {', '.join(shared)}")
    for claim in claims:
        identity = found.get((claim.kind, claim.value))
        if identity is None:
            if not add_identity(conn, contact_id, claim):
                # Someone else's concurrent transaction attached it since we looked; the retry
                # finds its owner instead of leaving this person split in two.
                raise LostRace(f"{claim.kind} identity claimed concurrently")
        elif identity.contact_id == contact_id and claim.meta and dict(claim.meta) != identity.meta:
            conn.execute(  # usernames change
                update(IDENTITIES)
                .where(IDENTITIES.c.id == identity.id)
                .values(meta={**identity.meta, **dict(claim.meta)})
            )
    if not created and (sender.name or sender.company):
        for column, value in (("name", sender.name), ("company", sender.company)):
            if value:
                conn.execute(
                    update(CONTACTS)
                    .where(CONTACTS.c.id == contact_id, CONTACTS.c[column].is_(None))
                    .values({column: value})
                )
    return Match(contact_id=contact_id, created=created, duplicates=tuple(owners[1:]))


def link_proven_phone(
    conn: Connection, contact_id: int, raw: str, region: str | None, reason: str
) -> tuple[int, bool]:
    """A phone the provider proves is the contact's (a Telegram share of one's own contact):
    attach it, and when another contact already has it, merge the two at once, audited (the
    older contact is kept, as it is the one operators already know). The kept contact's id,
    and whether a merge happened."""
    claim = phone_claim(raw, region)
    if not claim.valid:
        return contact_id, False  # proof of a number we cannot read links nothing
    owner = find_identities(conn, [claim]).get((claim.kind, claim.value))
    if owner is None:
        if not add_identity(conn, contact_id, claim):
            raise LostRace("phone identity claimed concurrently")
        return contact_id, False
    if owner.contact_id == contact_id:
        return contact_id, False
    keep, other = sorted((contact_id, owner.contact_id))
    try:
        merge_into(conn, keep, other, user_id=None, ip=None, reason=reason)
    except MergeError:
        # Merged by a concurrent transaction since we looked: the retry sees the outcome.
        raise LostRace("contact merged concurrently") from None
    return keep, True


def identities_by_kind(identities: list[Identity]) -> dict[str, Any]:
    """The contact shape's identity lists: phones (E.164), emails, telegram accounts."""
    out: dict[str, Any] = {"phones": [], "emails": [], "telegram": [], "invalid_phones": []}
    for identity in sorted(identities, key=lambda i: i.id):
        if identity.kind == "phone":
            out["phones" if identity.valid else "invalid_phones"].append(identity.value)
        elif identity.kind == "email":
            out["emails"].append(identity.value)
        elif identity.kind == "telegram":
            out["telegram"].append(
                {"id": identity.value, "username": identity.meta.get("username")}
            )
    return out


def phone_filter(value: str, region: str | None) -> Any:
    """A WHERE clause matching a contact's phone typed in any format."""
    claim = phone_claim(value, region)
    return or_(
        (Identity.kind == "phone") & (Identity.value == claim.value),
        (Identity.kind == "phone") & (Identity.raw == value.strip()),
    )
