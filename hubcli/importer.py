"""`hub import contacts FILE.csv [--map col=field ...] [--dry-run]`: contacts from a CSV file,
with a progress bar, a summary and a file of the rejected rows with their reasons."""

from __future__ import annotations

import argparse
import asyncio
import csv
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.db import Database
from hub.leads.importer import ContactImportError, ImportSummary, import_contacts
from hub.settings import Settings

SHOWN_REJECTS = 10


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = sub.add_parser("import", help="import contacts from a CSV file")
    what = command.add_subparsers(dest="import_command", required=True, metavar="WHAT")
    contacts = what.add_parser(
        "contacts",
        help="contacts from CSV: phones normalised, matched to existing contacts, no duplicates",
    )
    contacts.add_argument("file", type=Path, help="a CSV file with a header row")
    contacts.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="which field a column holds: name, phone, email, company, tags, custom:KEY, or - "
        "to skip it (headers named like the fields need none)",
    )
    contacts.add_argument(
        "--dry-run", action="store_true", help="match and count, but write nothing"
    )
    contacts.add_argument(
        "--rejected",
        type=Path,
        default=None,
        help="where to write the rejected rows with their reasons (default FILE.rejected.csv)",
    )


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def write_rejected(path: Path, summary: ImportSummary) -> None:
    columns: list[str] = []
    for rejected in summary.rejected:
        columns.extend(c for c in rejected.row if c not in columns)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "reason", *columns])
        for rejected in summary.rejected:
            writer.writerow(
                [rejected.line, rejected.reason, *(rejected.row.get(c, "") for c in columns)]
            )


def print_summary(console: Console, summary: ImportSummary, rejected_path: Path | None) -> None:
    table = Table(title="dry run: nothing was written" if summary.dry_run else "imported")
    table.add_column("rows", justify="right")
    table.add_column("new contacts", justify="right")
    table.add_column("matched existing", justify="right")
    table.add_column("updated", justify="right")
    table.add_column("rejected", justify="right")
    table.add_row(
        str(summary.rows),
        str(summary.created),
        str(summary.matched),
        str(summary.updated),
        str(len(summary.rejected)),
    )
    console.print(table)
    if summary.duplicates_suggested:
        console.print(
            f"{summary.duplicates_suggested} row(s) named two existing contacts: "
            "duplicate suggestions were recorded for an operator to merge"
        )
    if summary.ignored_columns:
        console.print(f"columns not imported: {', '.join(summary.ignored_columns)}")
    for rejected in summary.rejected[:SHOWN_REJECTS]:
        console.print(f"line {rejected.line}: {rejected.reason}", markup=False)
    if len(summary.rejected) > SHOWN_REJECTS:
        console.print(f"... and {len(summary.rejected) - SHOWN_REJECTS} more")
    if rejected_path is not None:
        console.print(f"rejected rows with reasons: {rejected_path}", markup=False)


def run_import(settings: Settings, args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    path: Path = args.file
    if not path.is_file():
        console.print(f"hub import: {path} is not a file", markup=False)
        return 2
    total = count_lines(path)

    async def run() -> ImportSummary:
        db = Database(settings.database_url)
        progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        try:
            with progress, path.open(encoding="utf-8-sig", newline="") as handle:
                task = progress.add_task("rows", total=total)
                return await import_contacts(
                    db,
                    handle,
                    args.map,
                    settings.default_region,
                    dry_run=args.dry_run,
                    progress=lambda n: progress.advance(task, n),
                )
        finally:
            await db.dispose()

    try:
        summary = asyncio.run(run())
    except ContactImportError as exc:
        console.print(f"hub import: {exc}", markup=False)
        return 2
    except UnicodeDecodeError:
        console.print(f"hub import: {path} is not UTF-8 text; save the CSV as UTF-8", markup=False)
        return 2
    rejected_path = None
    if summary.rejected:
        rejected_path = args.rejected or path.with_suffix(".rejected.csv")
        write_rejected(rejected_path, summary)
    print_summary(Console(), summary, rejected_path)
    return 0
