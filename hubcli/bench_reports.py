"""`hub bench --target reports|import`: the reports timed on generated leads (1M by default,
inserted with INSERT ... SELECT in SQL), and a CSV of contacts (100k rows) imported twice."""

# ruff: noqa: S608  # the SQL here is built only from this module's constants and integers

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from hub.db import Database
from hub.leads.importer import import_contacts
from hub.migrate import upgrade
from hub.models import utcnow
from hub.reports.registry import REPORTS, run_report
from hub.reports.report import Period
from hub.settings import Settings

DATA_TARGETS = ("reports", "import")
DEFAULT_ROWS = {"reports": 1_000_000, "import": 100_000}
SPAN_DAYS = 90
USERS = 20
MOBILE_CODES = ("90", "91", "93", "94", "95", "97", "98", "99")
FIRST_NAMES = ("Ali", "Vali", "Olga", "Anna", "Timur", "Dilnoza", "Sardor", "Maria", "John", "Aziz")
LAST_NAMES = ("Karimov", "Ivanova", "Smith", "Tursunov", "Petrova", "Aliyev", "Brown", "Yusupova")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="reports: leads to generate (default 1000000); import: CSV rows (default 100000)",
    )


def _sequence(dialect: str, rows: int) -> str:
    """A query of n = 1..rows, on either engine."""
    if dialect == "sqlite":
        return (
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows}) "
            "SELECT n FROM seq"
        )
    return f"SELECT generate_series(1, {rows}) AS n"


def _ago(dialect: str, seconds: str) -> str:
    """now minus `seconds` (an SQL expression), in the engine's stored form for timestamps."""
    if dialect == "sqlite":
        return f"(datetime('now', '-' || ({seconds}) || ' seconds') || '.000000')"
    return f"(now() - ({seconds}) * interval '1 second')"


def _plus(dialect: str, moment: str, seconds: str) -> str:
    if dialect == "sqlite":
        return f"(datetime({moment}, '+' || ({seconds}) || ' seconds') || '.000000')"
    return f"({moment} + ({seconds}) * interval '1 second')"


def generate_sql(dialect: str, rows: int) -> list[str]:
    """Users, then one contact and one lead per n, a missed call for every fourth lead (half of
    them called back) and a reminder for every fifth: all with INSERT ... SELECT."""
    seq = _sequence(dialect, rows)
    # Scattered over the span: a prime stride visits every second of it in a mixed order.
    created = _ago(dialect, f"(n * 7919) % {SPAN_DAYS * 86400}")
    users = _sequence(dialect, USERS)
    json_list, json_obj = (
        ("'[]'", "'{}'") if dialect == "sqlite" else ("'[]'::jsonb", "'{}'::jsonb")
    )
    true = "1" if dialect == "sqlite" else "true"
    return [
        f"INSERT INTO users (email, name, role, password_hash, active, created_at) "
        f"SELECT 'bench' || n || '@example.com', 'Operator ' || n, 'operator', '-', {true}, "
        f"{_ago(dialect, '0')} FROM ({users}) s",
        f"INSERT INTO contacts (id, name, tags, custom_fields, created_at, updated_at) "
        f"SELECT n, 'Bench ' || n, {json_list}, {json_obj}, {created}, {created} FROM ({seq}) s",
        "INSERT INTO leads (id, contact_id, source, channel, form_id, dialled_number, utm_source, "
        "utm_medium, utm_campaign, pipeline, stage, status, lost_reason, assignee_id, "
        "first_response_at, created_at, updated_at) "
        "SELECT n, n, "
        "CASE n % 4 WHEN 0 THEN 'form' WHEN 1 THEN 'call' WHEN 2 THEN 'telegram' ELSE 'sms' END, "
        "CASE n % 4 WHEN 0 THEN 'form' || (n % 3) WHEN 1 THEN 'office' WHEN 2 THEN 'tg' "
        "ELSE 'sms' END, "
        "CASE WHEN n % 4 = 0 THEN 'form' || (n % 3) END, "
        "CASE WHEN n % 4 = 1 THEN '+99871200' || (1000 + n % 7) END, "
        "CASE n % 5 WHEN 0 THEN 'google' WHEN 1 THEN 'facebook' WHEN 2 THEN 'instagram' "
        "WHEN 3 THEN 'yandex' END, "
        "CASE WHEN n % 5 < 4 THEN CASE n % 2 WHEN 0 THEN 'cpc' ELSE 'social' END END, "
        "CASE WHEN n % 5 < 4 THEN 'campaign' || (n % 12) END, "
        "'default', "
        "CASE n % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'contacted' WHEN 2 THEN 'qualified' "
        "ELSE 'proposal' END, "
        "CASE WHEN n % 10 < 2 THEN 'won' WHEN n % 10 < 5 THEN 'lost' ELSE 'open' END, "
        "CASE WHEN n % 10 BETWEEN 2 AND 4 THEN 'too expensive' END, "
        f"1 + n % {USERS}, "
        f"CASE WHEN n % 3 > 0 THEN {_plus(dialect, created, 'n % 3600')} END, "
        f"{created}, {created} FROM ({seq}) s",
        "INSERT INTO timeline_items (contact_id, channel, channel_type, direction, kind, text, "
        "attachments, status, meta, created_at, updated_at) "
        f"SELECT n, 'office', 'pbx', 'in', 'call', 'Missed call', {json_list}, 'missed', "
        f"{json_obj}, {created}, {created} FROM ({seq}) s WHERE n % 4 = 1",
        "INSERT INTO timeline_items (contact_id, channel, channel_type, direction, kind, text, "
        "attachments, status, meta, created_at, updated_at) "
        f"SELECT n, 'office', 'pbx', 'out', 'call', 'Called back', {json_list}, 'received', "
        f"{json_obj}, {_plus(dialect, created, 'n % 1800')}, {created} FROM ({seq}) s "
        "WHERE n % 8 = 1",
        "INSERT INTO reminders (lead_id, contact_id, assignee_id, due_at, status, created_at, "
        "updated_at) "
        f"SELECT n, n, 1 + n % {USERS}, {_plus(dialect, created, '900')}, "
        "CASE n % 4 WHEN 0 THEN 'done' WHEN 1 THEN 'done' WHEN 2 THEN 'pending' "
        "ELSE 'cancelled' END, "
        f"{created}, {_plus(dialect, created, '900 + n % 7200')} FROM ({seq}) s WHERE n % 5 = 0",
    ]


async def bench_reports(url: str, rows: int, console: Console) -> list[dict[str, Any]]:
    db = Database(url)
    dialect = "sqlite" if db.is_sqlite else "postgresql"
    try:
        started = time.perf_counter()
        async with db.engine.begin() as conn:
            for statement in generate_sql(dialect, rows):
                await conn.execute(text(statement))
            if dialect == "postgresql":
                for table in ("users", "contacts", "leads"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT MAX(id) FROM {table}))"
                        )
                    )
        async with db.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        console.print(f"generated {rows:,} leads in {time.perf_counter() - started:.1f} s")
        now = utcnow()
        settings = Settings(database_url=url)
        results = []
        for days in (30, SPAN_DAYS):
            period = Period(now - timedelta(days=days), now + timedelta(minutes=1))
            for name in REPORTS:
                started = time.perf_counter()
                async with db.read() as session:
                    report = await run_report(session, settings, name, period, {})
                seconds = time.perf_counter() - started
                leads = report.params.get("leads") if name == "funnel" else None
                results.append(
                    {
                        "report": name,
                        "days": days,
                        "rows": len(report.rows),
                        "seconds": seconds,
                        "period_leads": leads,
                    }
                )
        return results
    finally:
        await db.dispose()


def write_csv(path: Path, rows: int, seed: int = 10) -> int:
    """A contacts CSV: valid rows, one in a hundred with a bad phone; returns the bad count."""
    rng = random.Random(seed)
    bad = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("Name,Phone,Email,Company\n")
        for n in range(rows):
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            if n % 100 == 99:
                phone, bad = "12-ab", bad + 1
            else:
                number = f"{n // 8:07d}"
                phone = f"+998 {MOBILE_CODES[n % 8]} {number[:3]}-{number[3:5]}-{number[5:]}"
            handle.write(f"{name},{phone},person{n}@example.com,Company {n % 500}\n")
    return bad


async def bench_import(
    url: str, rows: int, workdir: Path, console: Console
) -> list[dict[str, Any]]:
    path = workdir / "contacts.csv"
    write_csv(path, rows)
    db = Database(url)
    results = []
    try:
        for run in ("first import", "same file again"):
            started, cpu = time.perf_counter(), time.process_time()
            with path.open(encoding="utf-8", newline="") as handle:
                summary = await import_contacts(db, handle, [], "UZ")
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            console.print(f"{run}: {seconds:.1f} s")
            results.append(
                {
                    "run": run,
                    "rows": summary.rows,
                    "created": summary.created,
                    "matched": summary.matched,
                    "rejected": len(summary.rejected),
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                }
            )
        return results
    finally:
        await db.dispose()


def run_data_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    rows = args.rows or DEFAULT_ROWS[args.target]
    if rows < 1:
        print("hub bench: --rows must be positive", file=sys.stderr)
        return 2
    command = ["hub", "bench", "--target", args.target]
    if args.rows:
        command += ["--rows", str(rows)]
    if args.database_url:
        command += ["--database-url", "<url>"]
        console.print(
            "[yellow]warning:[/] the bench rows go into that database's tables; use an empty one"
        )
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        if args.target == "reports":
            results = asyncio.run(bench_reports(url, rows, console))
            table = Table(title=f"reports over {rows:,} leads ({shlex.join(command)})")
            for column in ("report", "period", "result rows", "seconds"):
                table.add_column(column, justify="left" if column == "report" else "right")
            for r in results:
                table.add_row(
                    r["report"], f"{r['days']} days", str(r["rows"]), f"{r['seconds']:.2f}"
                )
        else:
            results = asyncio.run(bench_import(url, rows, Path(tmp), console))
            table = Table(title=f"import of {rows:,} CSV rows ({shlex.join(command)})")
            columns = (
                "run",
                "rows",
                "created",
                "matched",
                "rejected",
                "seconds",
                "cpu s",
                "rows/s",
            )
            for column in columns:
                table.add_column(column, justify="left" if column == "run" else "right")
            for r in results:
                table.add_row(
                    r["run"],
                    f"{r['rows']:,}",
                    f"{r['created']:,}",
                    f"{r['matched']:,}",
                    f"{r['rejected']:,}",
                    f"{r['seconds']:.1f}",
                    f"{r['cpu_seconds']:.1f}",
                    f"{r['rows'] / r['seconds']:,.0f}",
                )
    Console().print(table)
    if args.json:
        figures = {"command": shlex.join(command), "target": args.target, "results": results}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0
