"""Importing contacts from CSV: mapping, phone formats, matching existing contacts, no
duplicates on a second run, rejected rows with reasons, dry runs write nothing."""

from __future__ import annotations

import csv
import io

import pytest
from faker import Faker
from sqlalchemy import select

from hub.db import Database
from hub.leads.emails import normalize_email
from hub.leads.importer import ContactImportError, import_contacts, quick_email
from hub.models import Contact, DuplicateSuggestion, Identity
from tests.conftest import count
from tests.reports.factories import form_lead, uz_phone

fake = Faker()
Faker.seed(1010)


def csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> list[str]:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().splitlines(keepends=True)


def people(n: int) -> list[list[str]]:
    return [
        [fake.name(), uz_phone(1000 + i), fake.unique.email(), fake.company()] for i in range(n)
    ]


async def test_import_twice_creates_no_duplicates_and_lists_rejects(db: Database) -> None:
    existing = await form_lead(db, 1000)  # the first person of the file is already a contact
    rows = people(50)
    rows[1][1] = "90 000 10 01"  # a local format of person 1001: one contact, E.164
    rows += [
        ["Nobody", "", "", ""],
        ["Bad Phone", "12ab", "", ""],
        ["Bad Mail", "", "not-an-email", ""],
        ["Short row", uz_phone(5)],
        [rows[2][0], rows[2][1], "", "Again Inc"],  # the same person twice in one file
    ]
    lines = csv_text(["Full Name", "Mobile", "E-mail", "Organisation"], rows)
    first = await import_contacts(db, lines, [], "UZ", batch_size=16)
    assert (first.rows, first.created, first.matched) == (55, 49, 2)
    reasons = {r.line: r.reason for r in first.rejected}
    assert reasons == {
        52: "no phone or e-mail: nothing to match or reach the contact by",
        53: "phone: '12ab' is not a valid phone number",
        54: "email: 'not-an-email' is not a valid e-mail address",
        55: "has 2 fields, the header has 4",
    }
    contacts = await count(db, Contact)
    assert contacts == 50  # 49 new + the form's contact
    async with db.read() as session:
        local = await session.scalar(
            select(Identity).where(Identity.kind == "phone", Identity.value == uz_phone(1001))
        )
        assert local is not None and local.raw == "90 000 10 01"
        joined = await session.get(Contact, existing.contact_id)
        assert joined is not None and joined.name is not None and joined.company == rows[0][3]

    second = await import_contacts(db, lines, [], "UZ")
    assert (second.created, second.matched, len(second.rejected)) == (0, 51, 4)
    assert await count(db, Contact) == contacts
    assert await count(db, Identity) == 100  # a phone and an e-mail each, none twice


async def test_mapping_dry_run_tags_and_conflicts(db: Database) -> None:
    a = await form_lead(db, 1)
    lines = csv_text(
        ["who", "tel", "notes", "labels", "mail"],
        [
            ["Ann", uz_phone(2), "likes tea", "vip; wholesale", ""],
            ["Ann again", uz_phone(2), "", "vip", ""],
            ["Mixed", uz_phone(3), "", "", ""],
        ],
        delimiter=";",
    )
    overrides = ["who=name", "tel=phone", "notes=custom:notes", "labels=tags", "mail=-"]
    dry = await import_contacts(db, lines, overrides, "UZ", dry_run=True)
    assert (dry.created, dry.matched, dry.dry_run) == (2, 1, True)
    assert dry.ignored_columns == ["mail"]
    assert await count(db, Contact) == 1  # nothing written

    done = await import_contacts(db, lines, overrides, "UZ")
    assert (done.created, done.matched) == (2, 1)
    async with db.read() as session:
        ann = await session.scalar(select(Contact).where(Contact.name == "Ann"))
        assert ann is not None
        assert ann.tags == ["vip", "wholesale"] and ann.custom_fields == {"notes": "likes tea"}

    # one row naming two existing contacts joins the phone's and suggests a merge
    async with db.read() as session:
        email = await session.scalar(
            select(Identity.value).where(
                Identity.contact_id == a.contact_id, Identity.kind == "phone"
            )
        )
    clash = csv_text(
        ["phone", "email"], [[uz_phone(2), "x@example.com"], [str(email), "x@example.com"]]
    )
    result = await import_contacts(db, clash, [], "UZ")
    assert result.duplicates_suggested == 1
    assert await count(db, DuplicateSuggestion) == 1


@pytest.mark.parametrize(
    ("header", "overrides", "message"),
    [
        ([], [], "no header row"),
        (["a", "b"], [], "no column is mapped to phone or email"),
        (["a"], ["a"], "write it as column=field"),
        (["a"], ["zzz=phone"], "no column 'zzz' in the header"),
        (["a"], ["a=colour"], "field must be one of name, phone, email"),
    ],
)
async def test_bad_mappings_name_the_problem(
    db: Database, header: list[str], overrides: list[str], message: str
) -> None:
    lines = csv_text(header, []) if header else []
    with pytest.raises(ContactImportError, match=message):
        await import_contacts(db, lines, overrides, "UZ")


def test_quick_email_agrees_with_the_full_check() -> None:
    many = Faker(["en_US", "ru_RU", "de_DE"])
    many.seed_instance(3)
    odd = [
        "A.B@Example.COM",
        "a..b@x.com",
        ".a@x.com",
        "a.@x.com",
        "a@-x.com",
        "a@x-.com",
        "a@x.c",
        "a@localhost",
        "a@x.test",
        "Иван@x.com",
        "a@xn--80ak6aa92e.com",
        "a@x.123",
        " Q@W.EE ",
        "x" * 65 + "@x.com",
    ]
    for address in [many.email() for _ in range(500)] + odd:
        assert quick_email(address) == normalize_email(address), address
