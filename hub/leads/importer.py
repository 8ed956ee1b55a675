"""Importing contacts from CSV: columns mapped to fields, phones normalised, every row matched
against existing contacts by phone and e-mail (never a duplicate), rejected rows with reasons.

Rows go in batches: one transaction per batch, one query finds every identity the batch
claims, and the new contacts and identities are inserted with executemany, so 100k rows take
seconds. A dry run does the same matching and writes nothing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection, bindparam, insert, select, update

from hub.db import Database
from hub.leads.emails import normalize_email
from hub.leads.identity import PRIORITY, Claim, find_identities, phone_claim, suggest_duplicate
from hub.models import CONTACTS, IDENTITIES, utcnow

log = structlog.get_logger(__name__)
FIELDS = ("name", "phone", "email", "company", "tags")
CUSTOM_PREFIX = "custom:"
# Header names understood without a --map, lower-cased, spaces and dashes as "_".
SYNONYMS = {
    "name": "name",
    "full_name": "name",
    "fullname": "name",
    "contact": "name",
    "phone": "phone",
    "phone_number": "phone",
    "phones": "phone",
    "mobile": "phone",
    "tel": "phone",
    "telephone": "phone",
    "email": "email",
    "e_mail": "email",
    "mail": "email",
    "emails": "email",
    "company": "company",
    "organisation": "company",
    "organization": "company",
    "tags": "tags",
}
BATCH_SIZE = 1000
MAX_TEXT = 200
MULTI_SPLIT = re.compile(r"[;,|]")


class ContactImportError(ValueError):
    """The import cannot start (a bad mapping, no header); the message names what to fix."""


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str
    row: dict[str, str]


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    matched: int = 0
    updated: int = 0
    duplicates_suggested: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    dry_run: bool = False
    mapping: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    def to_dict(self, max_rejected: int = 1000) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "matched": self.matched,
            "updated": self.updated,
            "duplicates_suggested": self.duplicates_suggested,
            "rejected_count": len(self.rejected),
            "rejected": [
                {"line": r.line, "reason": r.reason, "row": r.row}
                for r in self.rejected[:max_rejected]
            ],
            "dry_run": self.dry_run,
            "mapping": self.mapping,
            "ignored_columns": self.ignored_columns,
        }


@dataclass(frozen=True)
class ContactRow:
    line: int
    claims: tuple[Claim, ...]
    name: str | None
    company: str | None
    tags: tuple[str, ...]
    custom: tuple[tuple[str, str], ...]


# Plain ASCII addresses, checked by a regex as strictly as email-validator would, skip its
# ten-times slower full check; anything unusual goes through it (as forms do).
PLAIN_EMAIL = re.compile(
    r"^[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
SPECIAL_USE_TLDS = frozenset(("arpa", "invalid", "local", "localhost", "onion", "test"))


def quick_email(raw: str) -> str | None:
    """normalize_email's answer, faster for the common plain addresses."""
    text = raw.strip().lower()
    if (
        len(text) <= 254
        and PLAIN_EMAIL.match(text)
        and len(text.partition("@")[0]) <= 64
        and text.rsplit(".", 1)[-1] not in SPECIAL_USE_TLDS
        and "xn--" not in text  # punycode: email-validator turns it into Unicode
    ):
        return text
    return normalize_email(raw)


def _field_name(value: str) -> str:
    return re.sub(r"[\s\-]+", "_", value.strip().lower())


def build_mapping(header: list[str], overrides: Iterable[str]) -> dict[str, str]:
    """Column -> field: header names the importer knows, then each `column=field` given (a
    field is name, phone, email, company, tags, custom:KEY, or "-" to skip the column)."""
    if not header or not any(h.strip() for h in header):
        raise ContactImportError("the file has no header row naming its columns")
    mapping = {col: SYNONYMS[_field_name(col)] for col in header if _field_name(col) in SYNONYMS}
    for item in overrides:
        column, sep, target = item.partition("=")
        column, target = column.strip(), target.strip()
        if not sep or not column or not target:
            raise ContactImportError(
                f"--map {item!r}: write it as column=field, e.g. 'Mobile=phone'"
            )
        if column not in header:
            raise ContactImportError(
                f"--map {item!r}: no column {column!r} in the header ({', '.join(header)})"
            )
        if target == "-":
            mapping.pop(column, None)
        elif target in FIELDS or (
            target.startswith(CUSTOM_PREFIX)
            and re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", target[len(CUSTOM_PREFIX) :])
        ):
            mapping[column] = target
        else:
            raise ContactImportError(
                f"--map {item!r}: field must be one of {', '.join(FIELDS)}, custom:KEY or '-'"
            )
    if not any(f in ("phone", "email") for f in mapping.values()):
        raise ContactImportError(
            "no column is mapped to phone or email, so no contact could be matched; "
            "map one, e.g. --map 'Mobile=phone'"
        )
    return mapping


def read_csv(lines: Iterable[str]) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and the (line number, cells) of each row; the delimiter (, ; or tab) is
    guessed from the header line."""
    iterator = iter(lines)
    first = next(iterator, "")
    delimiter = max((",", ";", "\t"), key=first.count) if first else ","

    def chained() -> Iterator[str]:
        yield first
        yield from iterator

    reader = csv.reader(chained(), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]

    def rows() -> Iterator[tuple[int, list[str]]]:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines
            yield reader.line_num, cells

    return header, rows()


def parse_row(
    line: int, header: list[str], cells: list[str], mapping: Mapping[str, str], region: str | None
) -> ContactRow | Rejected:
    raw = dict(zip(header, cells, strict=False))
    if len(cells) != len(header):
        return Rejected(line, f"has {len(cells)} fields, the header has {len(header)}", raw)
    values: dict[str, list[str]] = {}
    for column, target in mapping.items():
        text = raw.get(column, "").strip()
        if text:
            values.setdefault(target, []).append(text)
    claims: list[Claim] = []
    for text in values.get("phone", []):
        for part in MULTI_SPLIT.split(text):
            if not part.strip():
                continue
            claim = phone_claim(part, region)
            if not claim.valid:
                hint = "" if region else " (include the country code, or set default_region)"
                return Rejected(
                    line, f"phone: {part.strip()!r} is not a valid phone number{hint}", raw
                )
            claims.append(claim)
    for text in values.get("email", []):
        for part in MULTI_SPLIT.split(text):
            if not part.strip():
                continue
            email = quick_email(part)
            if email is None:
                return Rejected(line, f"email: {part.strip()!r} is not a valid e-mail address", raw)
            claims.append(Claim("email", email, part.strip()[:254]))
    if not claims:
        return Rejected(line, "no phone or e-mail: nothing to match or reach the contact by", raw)
    for key in ("name", "company"):
        if any(len(v) > MAX_TEXT for v in values.get(key, [])):
            return Rejected(line, f"{key}: longer than {MAX_TEXT} characters", raw)
    unique = {(c.kind, c.value): c for c in claims}
    tags = [t.strip() for v in values.get("tags", []) for t in MULTI_SPLIT.split(v) if t.strip()]
    custom = [
        (target[len(CUSTOM_PREFIX) :], " ".join(texts)[:1000])
        for target, texts in values.items()
        if target.startswith(CUSTOM_PREFIX)
    ]
    return ContactRow(
        line=line,
        claims=tuple(sorted(unique.values(), key=lambda c: PRIORITY[c.kind])),
        name=" ".join(values["name"]) if "name" in values else None,
        company=" ".join(values["company"]) if "company" in values else None,
        tags=tuple(dict.fromkeys(t[:64] for t in tags)),
        custom=tuple(custom),
    )


@dataclass
class BatchOutcome:
    created: int = 0
    matched: int = 0
    updated: int = 0
    suggested: int = 0
    known: dict[tuple[str, str], int] = field(default_factory=dict)  # identities now owned


INSERT_CONTACTS = insert(CONTACTS).returning(CONTACTS.c.id, sort_by_parameter_order=True)
UPDATE_CONTACT = (
    update(CONTACTS)
    .where(CONTACTS.c.id == bindparam("contact_id"))
    .values(
        name=bindparam("new_name"),
        company=bindparam("new_company"),
        tags=bindparam("new_tags"),
        custom_fields=bindparam("new_custom"),
        updated_at=bindparam("now"),
    )
)


# SQLite: a plain executemany of the identities (two per contact), since SQLAlchemy's
# per-parameter type processing costs more than the insert itself; values as it stores them.
SQLITE_INSERT_IDENTITIES = (
    "INSERT INTO identities (contact_id, kind, value, raw, valid, meta, created_at) "
    "VALUES (?, ?, ?, ?, 1, '{}', ?)"
)


def _insert_identities(conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
    if conn.dialect.name != "sqlite":
        conn.execute(insert(IDENTITIES), rows)
        return
    stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn.exec_driver_sql(
        SQLITE_INSERT_IDENTITIES,
        [(r["contact_id"], r["kind"], r["value"], r["raw"], stamp) for r in rows],
    )


def apply_batch(
    conn: Connection,
    rows: list[ContactRow],
    known: Mapping[tuple[str, str], int],
    dry_run: bool,
    next_placeholder: int,
) -> BatchOutcome:
    """One batch in one transaction. `known` holds identities earlier batches matched or made
    (in a dry run, made-up negative ids stand for contacts that would be created)."""
    outcome = BatchOutcome()
    wanted = [c for row in rows for c in row.claims if (c.kind, c.value) not in known]
    found = {key: f.contact_id for key, f in find_identities(conn, wanted).items()}
    owners_of = {**found}
    # Which contact each row joins: the owner of its strongest claim, else a new contact
    # (rows of one new person within the batch share it).
    placeholders: dict[int, int] = {}  # placeholder -> index into new_rows
    new_rows: list[ContactRow] = []
    assignments: list[tuple[ContactRow, int, list[int]]] = []
    for row in rows:
        owners: list[int] = []
        for claim in row.claims:
            key = (claim.kind, claim.value)
            owner = known.get(key, owners_of.get(key))
            if owner is not None and owner not in owners:
                owners.append(owner)
        if owners:
            contact = owners[0]
            outcome.matched += 1
        else:
            next_placeholder -= 1
            contact = next_placeholder
            placeholders[contact] = len(new_rows)
            new_rows.append(row)
            outcome.created += 1
        for claim in row.claims:
            owners_of.setdefault((claim.kind, claim.value), contact)
        assignments.append((row, contact, owners[1:]))
    ids: dict[int, int] = {}
    now = utcnow()
    if new_rows and not dry_run:
        values = [
            {
                "name": row.name,
                "company": row.company,
                "tags": list(row.tags),
                "custom_fields": dict(row.custom),
                "created_at": now,
                "updated_at": now,
            }
            for row in new_rows
        ]
        created_ids = conn.execute(INSERT_CONTACTS, values).scalars().all()
        ids = {p: int(created_ids[i]) for p, i in placeholders.items()}

    def real(contact: int) -> int:
        return ids.get(contact, contact)

    identities: list[dict[str, Any]] = []
    merged: dict[int, dict[str, Any]] = {}  # existing contacts: what the rows add to them
    for row, contact, others in assignments:
        for claim in row.claims:
            key = (claim.kind, claim.value)
            if key not in known and key not in found and key not in outcome.known:
                identities.append(
                    {
                        "contact_id": real(contact),
                        "kind": claim.kind,
                        "value": claim.value,
                        "raw": claim.raw,
                        "valid": True,
                        "meta": {},
                        "created_at": now,
                    }
                )
            outcome.known[key] = real(known.get(key, owners_of[key]))
        if contact > 0:
            extra = merged.setdefault(contact, {"tags": [], "custom": {}})
            extra.setdefault("name", row.name)
            extra.setdefault("company", row.company)
            extra["tags"].extend(row.tags)
            extra["custom"].update(dict(row.custom))
        for other in others:
            if contact > 0 and other > 0 and not dry_run:
                claimed = ", ".join(f"{c.kind} {c.value}" for c in row.claims)
                suggest_duplicate(conn, contact, other, f"import line {row.line} claimed {claimed}")
            outcome.suggested += 1
    if identities and not dry_run:
        _insert_identities(conn, identities, now)
    if merged:
        current = conn.execute(
            select(
                CONTACTS.c.id,
                CONTACTS.c.name,
                CONTACTS.c.company,
                CONTACTS.c.tags,
                CONTACTS.c.custom_fields,
            ).where(CONTACTS.c.id.in_(list(merged)))
        )
        changes = []
        for existing in current:
            extra = merged[existing.id]
            tags = list(dict.fromkeys([*(existing.tags or []), *extra["tags"]]))
            custom = {**(existing.custom_fields or {}), **extra["custom"]}
            new = {
                "contact_id": existing.id,
                "new_name": existing.name or extra.get("name"),
                "new_company": existing.company or extra.get("company"),
                "new_tags": tags,
                "new_custom": custom,
                "now": now,
            }
            if (new["new_name"], new["new_company"], tags, custom) != (
                existing.name,
                existing.company,
                list(existing.tags or []),
                dict(existing.custom_fields or {}),
            ):
                changes.append(new)
        if changes and not dry_run:
            conn.execute(UPDATE_CONTACT, changes)
        outcome.updated = len(changes)
    return outcome


def parse_chunk(
    header: list[str],
    chunk: list[tuple[int, list[str]]],
    mapping: Mapping[str, str],
    region: str | None,
) -> list[ContactRow | Rejected]:
    """Parse a chunk of rows (phones and e-mails checked)."""
    return [parse_row(line, header, cells, mapping, region) for line, cells in chunk]


def _chunks(
    rows: Iterator[tuple[int, list[str]]], size: int
) -> Iterator[list[tuple[int, list[str]]]]:
    chunk: list[tuple[int, list[str]]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def import_contacts(
    db: Database,
    lines: Iterable[str],
    overrides: Iterable[str] = (),
    region: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportSummary:
    """Import a CSV (header first); `progress(n)` is told after each batch of n rows."""
    header, rows = read_csv(lines)
    mapping = build_mapping(header, overrides)
    summary = ImportSummary(
        dry_run=dry_run,
        mapping=mapping,
        ignored_columns=[h for h in header if h not in mapping and h],
    )
    known: dict[tuple[str, str], int] = {}
    placeholder = 0
    for chunk in _chunks(rows, batch_size):
        parsed = parse_chunk(header, chunk, mapping, region)
        batch = [row for row in parsed if isinstance(row, ContactRow)]
        summary.rows += len(parsed)
        summary.rejected.extend(row for row in parsed if isinstance(row, Rejected))
        if batch:
            outcome = await db.run_write_retrying(apply_batch, batch, known, dry_run, placeholder)
            placeholder -= outcome.created
            known.update(outcome.known)
            summary.created += outcome.created
            summary.matched += outcome.matched
            summary.updated += outcome.updated
            summary.duplicates_suggested += outcome.suggested
        if progress is not None:
            progress(len(parsed))
    log.info(
        "contacts_imported",
        rows=summary.rows,
        created=summary.created,
        matched=summary.matched,
        rejected=len(summary.rejected),
        dry_run=dry_run,
    )
    return summary
