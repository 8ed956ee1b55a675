"""`hub bench --target email`: IMAP ingest. A real IMAP server (pymap, in its own process) and a
running `hub up` polling it; N mails from N people appear in the inbox at once (one MOVE), and
the clock stops when every one is committed as a timeline item with its contact and lead."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import text

from hub.db import Database
from hubcli.bench import (
    BenchError,
    child_env,
    forget_redis_keys,
    free_port,
    hub_env,
    migrate,
    progress_bar,
    running,
    start_server,
    wait_healthy,
    workdir_prefix,
)

CHANNEL = "benchmail"
USER = "support@bench.example.com"
PASSWORD = "bench-imap-password"  # noqa: S105  # the throwaway server's own account
STAGING = "Staging"
GOAL_MAILS_PER_S = 500.0
TIMEOUT = 1800.0
TEXTS = (
    "Здравствуйте! Сколько стоит доставка в Ташкент?",
    "Hello, do you have this sofa in grey?",
    "Assalomu alaykum, narxini yuboring.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mails",
        type=int,
        default=10_000,
        help="email: mails that appear in the mailbox at once (default 10000)",
    )


def channel_config(imap_port: int) -> str:
    return f"""
[channels.{CHANNEL}]
type = "email"
address = "{USER}"
imap_host = "127.0.0.1"
imap_port = {imap_port}
imap_tls = "none"
imap_user = "{USER}"
imap_password = "{PASSWORD}"
smtp_host = "127.0.0.1"
smtp_port = {free_port()}
smtp_tls = "none"
poll_seconds = 1
"""


def mail(index: int, run: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {index} <customer{index}.{run}@bench.example.org>"
    message["To"] = USER
    message["Subject"] = f"Enquiry {index}"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{run}.{index}@bench.example.org>"
    message.set_content(TEXTS[index % len(TEXTS)] + f"\n\n-- \nCustomer {index}\n")
    return bytes(message)


def pymap_argv(port: int, user: str, password: str) -> list[str]:
    """pymap, the test dependency's IMAP server, in memory with one demo user, on `port`."""
    return [
        sys.executable,
        "-c",
        "from pymap.main import main; main()",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-service",
        "managesieve",
        "--no-service",
        "admin",
        "dict",
        "--demo-user",
        user,
        "--demo-password",
        password,
    ]


def start_imap(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    try:
        import pymap  # noqa: F401  # only checks that the test server is installed
    except ImportError:
        raise BenchError("the email bench needs pymap: pip install -e '.[test]'") from None
    port = free_port()
    log = open(workdir / "imap.err", "wb")  # noqa: SIM115  # owned by the child
    try:
        proc = subprocess.Popen(  # noqa: S603  # our own interpreter, fixed arguments
            pymap_argv(port, USER, PASSWORD),
            env=child_env({}),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    finally:
        log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise BenchError("the IMAP server (pymap) did not start")


def stage(port: int, count: int, run: str, console: Console) -> None:
    """The mails into a staging folder first: appending them is not what is measured."""
    from imapclient import IMAPClient  # type: ignore[import-untyped]  # ships no type hints

    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=120)
    try:
        client.login(USER, PASSWORD)
        client.create_folder(STAGING)
        with progress_bar(console) as progress:
            task = progress.add_task("staging mails", total=count)
            batch = 500
            for start in range(0, count, batch):
                mails = [mail(i, run) for i in range(start, min(count, start + batch))]
                client.multiappend(STAGING, mails)
                progress.update(task, advance=len(mails))
    finally:
        client.logout()


def release(port: int) -> None:
    """Every staged mail into the inbox in one command: they appear at once."""
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=600)
    try:
        client.login(USER, PASSWORD)
        client.select_folder(STAGING)
        client.move(client.search(["ALL"]), "INBOX")
    finally:
        client.logout()


COMMITTED = text(
    "SELECT count(*) FROM timeline_items i JOIN leads l ON l.first_item_id = i.id "
    "WHERE i.channel = :channel AND i.contact_id IS NOT NULL"
)


async def committed(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(COMMITTED, {"channel": CHANNEL})).scalar() or 0)


async def measure(args: argparse.Namespace, workdir: Path, console: Console) -> dict[str, Any]:
    run = f"{random.getrandbits(32):08x}"
    imap, imap_port = start_imap(workdir)
    try:
        await asyncio.to_thread(stage, imap_port, args.mails, run, console)
        hub_port = free_port()
        prefix = f"bench:{random.getrandbits(40):010x}:"
        env = hub_env(args, workdir, hub_port, prefix, channel_config(imap_port))
        if args.database_url:
            migrate(env, workdir)
        url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'data' / 'hub.db'}"
        hub = start_server(
            "hub", [sys.executable, "-m", "hubcli.main", "up"], env, hub_port, workdir
        )
        try:
            with running(hub):
                await wait_healthy(hub)
                db = Database(url)
                try:
                    before = await committed(db)
                    await asyncio.to_thread(release, imap_port)
                    started = time.perf_counter()
                    with progress_bar(console) as progress:
                        task = progress.add_task("committed", total=args.mails)
                        done = 0
                        while done < args.mails:
                            if hub.proc.poll() is not None:
                                raise BenchError(f"the hub exited:\n{hub.stderr_tail()}")
                            if time.perf_counter() - started > TIMEOUT:
                                raise BenchError(f"only {done} of {args.mails} committed in time")
                            await asyncio.sleep(0.25)
                            done = await committed(db) - before
                            progress.update(task, completed=done)
                    seconds = time.perf_counter() - started
                finally:
                    await db.dispose()
        finally:
            if args.redis_url:
                forget_redis_keys(args.redis_url, prefix)
    finally:
        imap.terminate()
        try:
            imap.wait(15)
        except subprocess.TimeoutExpired:
            imap.kill()
            imap.wait()
    return {"mails": args.mails, "seconds": round(seconds, 2), "mails_per_s": args.mails / seconds}


def run_email_bench(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    parts = ["hub", "bench", "--target", "email", "--mails", str(args.mails)]
    if args.json:
        parts += ["--json", args.json]
    command = shlex.join(parts)
    if args.mails < 1:
        print("hub bench: --mails must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix=workdir_prefix()) as tmp:
        try:
            figures = asyncio.run(measure(args, Path(tmp), console))
        except BenchError as exc:
            print(f"hub bench: {exc}", file=sys.stderr)
            return 2
    figures["command"] = command
    figures["goal_mails_per_s"] = GOAL_MAILS_PER_S
    rate = figures["mails_per_s"]
    verdict = "meets" if rate >= GOAL_MAILS_PER_S else "misses"
    print(command)
    print(
        f"{figures['mails']} mails committed (item, contact, lead) in {figures['seconds']} s: "
        f"{rate:,.0f} mails/s ({verdict} the target of {GOAL_MAILS_PER_S:.0f} mails/s)"
    )
    figures["mails_per_s"] = round(rate, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0
