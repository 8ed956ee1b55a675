"""`hub bench`: load-test POST /forms/{id} (or the Telegram webhook) through the full pipeline
and a bare aiohttp handler."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

FORM_ID = "bench"
# reports and import: bench_reports.py; email: bench_email.py; reminders: bench_reminders.py
TARGETS = ("form", "telegram", "reports", "import", "email", "reminders")
TELEGRAM_CHANNEL = "benchtg"
# Well-formed, so `hub up` accepts it; never used: the bench only posts inbound updates.
TELEGRAM_TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"  # noqa: S105
TELEGRAM_VERIFY_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM_USERS = 1000  # the pool of returning people the updates come from
TELEGRAM_ID_SPACE = 2**31 - 1  # update_id and message_id are 32-bit in the Bot API
TELEGRAM_TEXTS = (
    "Salom! Do you deliver to Tashkent?",
    "How much is the bench offer?",
    "Can I pay by card?",
    "Thanks, see you tomorrow",
)
GOAL_RATIO = 0.33  # hub req/s over bare req/s
GOAL_P99_MS = 20.0
MAX_ERROR_SHARE = 0.001  # more errors than this makes the exit code non-zero
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 30.0
PHONE_PREFIX = "+99890"  # UZ mobile; 7 more digits from a counter
PHONE_SPACE = 10_000_000
ERROR_SAMPLES = 5
# Every process the bench starts carries this variable (with the bench's pid) in its environment,
# and the work dir (so the embedded Redis's socket path) is named after the pid: a test finds
# leftovers through /proc, even a Redis that rewrote its environment and lost its parent.
MARKER_ENV = "HUB_BENCH_PARENT"


def workdir_prefix(pid: int | None = None) -> str:
    return f"hub-bench-{os.getpid() if pid is None else pid}-"


BENCH_CONFIG = f"""\
default_region = "UZ"

[forms.{FORM_ID}]
fields = ["name", "phone", "email", "message"]
required = ["phone"]
allowed_origins = ["*"]
rate_limit = "1000000/minute"
"""


def telegram_config(secret: str, api_port: int) -> str:
    """The bench channel: nothing is sent out, so api_base is a local port nobody listens on."""
    return f"""
[channels.{TELEGRAM_CHANNEL}]
type = "telegram"
bot_token = "{TELEGRAM_TOKEN}"
webhook_secret = "{secret}"
api_base = "http://127.0.0.1:{api_port}"
"""


# The baseline: the same framework and the same request, with no pipeline behind it.
BARE_SERVER = """\
import json, sys
from aiohttp import web

ANSWER = json.dumps({"lead_id": 1, "contact_id": 1})

async def submit(request):
    await request.json()
    return web.Response(status=201, text=ANSWER, content_type="application/json")

async def webhook(request):
    await request.json()
    return web.Response(status=200)

async def healthz(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_post("/forms/{form_id}", submit)
app.router.add_post("/webhooks/telegram/{channel}", webhook)
app.router.add_get("/healthz", healthz)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            backlog=1024)
"""


class BenchError(Exception):
    """The bench could not run (a server did not start); the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="form",
        help=f"what to post: form posts to /forms/{FORM_ID} (default), or Telegram text "
        f"updates to /webhooks/telegram/{TELEGRAM_CHANNEL} from {TELEGRAM_USERS} returning users",
    )
    parser.add_argument(
        "--connections", type=_positive, default=32, help="concurrent clients (default 32)"
    )
    parser.add_argument(
        "--requests",
        type=_positive,
        default=20000,
        help="measured requests per target (default 20000)",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative,
        default=500,
        help="unmeasured requests per target first (default 500)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="bench the hub on this database instead of a fresh SQLite file "
        "(e.g. postgresql+asyncpg://postgres@127.0.0.1/test); bench rows stay in its tables",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis (with a unique key prefix) instead of an embedded one",
    )
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the figures here")
    from hubcli.bench_reports import add_arguments as add_data_arguments

    add_data_arguments(parser)
    from hubcli.bench_email import add_arguments as add_email_arguments

    add_email_arguments(parser)
    from hubcli.bench_reminders import add_arguments as add_reminder_arguments

    add_reminder_arguments(parser)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


# -- the servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A server child process, in its own process group so that nothing it starts outlives it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    def stderr_tail(self, lines: int = 30) -> str:
        try:
            text = self.stderr_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, SIGKILL after `timeout`; then kill whatever is left in its group."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # The group id is the child's pid (start_new_session); grandchildren still in it go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def start_server(
    name: str, argv: list[str], env: dict[str, str], port: int, workdir: Path
) -> Server:
    stdout = open(workdir / f"{name}.out", "wb")  # noqa: SIM115  # owned by the child
    stderr_path = workdir / f"{name}.err"
    stderr = open(stderr_path, "wb")  # noqa: SIM115
    try:
        proc = subprocess.Popen(  # noqa: S603  # our own interpreter: the hub or the baseline
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=workdir,
            start_new_session=True,
        )
    finally:
        stdout.close()
        stderr.close()
    return Server(name, proc, f"http://127.0.0.1:{port}", stderr_path)


async def wait_healthy(server: Server) -> None:
    """GET /healthz until it answers 200; fail with the server's stderr if it dies or hangs."""
    timeout = STARTUP_TIMEOUT
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise BenchError(
                    f"the {server.name} server exited with code {server.proc.returncode} "
                    f"before it was ready; its stderr ends with:\n{server.stderr_tail()}"
                )
            try:
                async with session.get(f"{server.url}/healthz") as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}: {(await response.text())[:200]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.1)
    raise BenchError(
        f"the {server.name} server did not answer GET /healthz with 200 within {timeout:.0f}s "
        f"(last: {last}); its stderr ends with:\n{server.stderr_tail()}"
    )


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(extra)
    env[MARKER_ENV] = str(os.getpid())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def hub_env(
    args: argparse.Namespace, workdir: Path, port: int, prefix: str, channels: str = ""
) -> dict[str, str]:
    config = workdir / "hub.toml"
    config.write_text(BENCH_CONFIG + channels, encoding="utf-8")
    extra = {
        "HUB_CONFIG": str(config),
        "HUB_DATA_DIR": str(workdir / "data"),
        "HUB_PORT": str(port),
        "HUB_HOST": "127.0.0.1",
        "HUB_LOG_LEVEL": "warning",
        "HUB_REDIS_PREFIX": prefix,
    }
    if args.database_url:
        extra["HUB_DATABASE_URL"] = args.database_url
    if args.redis_url:
        extra["HUB_REDIS_URL"] = args.redis_url
    return child_env(extra)


def migrate(env: dict[str, str], workdir: Path) -> None:
    """`hub up` migrates SQLite itself; a database given on the command line is migrated here."""
    done = subprocess.run(  # our own interpreter and module
        [sys.executable, "-m", "hubcli.main", "migrate"],
        env=env,
        cwd=workdir,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode("utf-8", "replace").splitlines()[-30:])
        raise BenchError(f"`hub migrate` failed with code {done.returncode}:\n{tail}")


def forget_redis_keys(url: str, prefix: str) -> None:
    """Best effort: remove what the bench hub left in a shared Redis (limits, live events, jobs)."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            for pattern in (f"{prefix}*", f"arq:*{prefix}*"):
                batch: list[Any] = []
                for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        client.delete(*batch)
                        batch.clear()
                if batch:
                    client.delete(*batch)
        finally:
            client.close()
    except (redis.RedisError, OSError) as exc:
        print(f"hub bench: could not remove the bench keys {prefix}* from Redis: {exc}")


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Result:
    target: str
    requests: int
    errors: int
    warmup_errors: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    error_samples: list[str] = field(default_factory=list)


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Source(Protocol):
    """Where the requests' bodies and headers come from: one new request per call."""

    def next(self) -> tuple[dict[str, Any], dict[str, str]]: ...


class Payloads:
    """Distinct people: each request a new phone, name and Idempotency-Key, so a new contact
    and lead every time; the phone range starts at random so reruns on one database differ."""

    def __init__(self, total: int) -> None:
        if total > PHONE_SPACE:
            raise BenchError(f"at most {PHONE_SPACE} requests per run, got {total}")
        self.run = f"{random.getrandbits(48):012x}"
        self.start = random.randrange(PHONE_SPACE - total + 1)
        self.count = 0

    def next(self) -> tuple[dict[str, Any], dict[str, str]]:
        n = self.start + self.count
        self.count += 1
        body = {
            "name": f"Bench Person {n}",
            "phone": f"{PHONE_PREFIX}{n:07d}",
            "message": "Please call me back about the bench offer",
        }
        headers = {
            "Idempotency-Key": f"bench-{self.run}-{n}",
            "Origin": "https://bench.example",
        }
        return body, headers


class TelegramUpdates:
    """Text messages from a pool of returning people: each update a new update_id and
    message_id, its sender one of `TELEGRAM_USERS` users (each in their private chat with the
    bot), so after the first few most updates land on an existing contact and conversation.
    The ids start at random so reruns on one database differ."""

    def __init__(self, total: int, secret: str, users: int = TELEGRAM_USERS) -> None:
        if total > TELEGRAM_ID_SPACE // 2:
            raise BenchError(f"at most {TELEGRAM_ID_SPACE // 2} requests per run, got {total}")
        self.headers = {TELEGRAM_VERIFY_HEADER: secret}
        self.start = random.randrange(1, TELEGRAM_ID_SPACE - total + 1)
        first_user = random.randrange(10**9, 7 * 10**9)
        self.users = [first_user + n for n in range(users)]
        self.random = random.Random()
        self.count = 0

    def next(self) -> tuple[dict[str, Any], dict[str, str]]:
        n = self.start + self.count
        self.count += 1
        user_id = self.random.choice(self.users)
        person = {"first_name": "Bench", "last_name": f"User {user_id}"}
        body = {
            "update_id": n,
            "message": {
                "message_id": n,
                "from": {"id": user_id, "is_bot": False, **person, "language_code": "uz"},
                "chat": {"id": user_id, **person, "type": "private"},
                "date": int(time.time()),
                "text": TELEGRAM_TEXTS[n % len(TELEGRAM_TEXTS)],
            },
        }
        return body, self.headers


def target_path(target: str) -> str:
    return f"/webhooks/telegram/{TELEGRAM_CHANNEL}" if target == "telegram" else f"/forms/{FORM_ID}"


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    payloads: Source,
    count: int,
    connections: int,
    latencies: list[float] | None,
    errors: list[str],
    advance: Callable[[], None],
) -> None:
    """`count` requests from `connections` workers; latencies (seconds) are recorded if given."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            body, headers = payloads.next()
            started = time.perf_counter()
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    text = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if latencies is not None:
                    latencies.append(time.perf_counter() - started)
                if not 200 <= status < 300:
                    errors.append(f"HTTP {status}: {text[:200].decode('utf-8', 'replace')}")
            advance()

    await asyncio.gather(*(worker() for _ in range(min(connections, count))))


async def load(
    name: str, server: Server, args: argparse.Namespace, progress: Progress, secret: str = ""
) -> Result:
    url = f"{server.url}{target_path(args.target)}"
    total = args.warmup + args.requests
    payloads: Source = (
        TelegramUpdates(total, secret) if args.target == "telegram" else Payloads(total)
    )
    task = progress.add_task(name, total=total)

    def advance() -> None:
        progress.advance(task)

    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warmup_errors: list[str] = []
        await drive(
            session, url, payloads, args.warmup, args.connections, None, warmup_errors, advance
        )
        latencies: list[float] = []
        errors: list[str] = []
        started = time.perf_counter()
        await drive(
            session, url, payloads, args.requests, args.connections, latencies, errors, advance
        )
        seconds = time.perf_counter() - started
    latencies.sort()
    all_errors = warmup_errors + errors
    return Result(
        target=name,
        requests=args.requests,
        errors=len(errors),
        warmup_errors=len(warmup_errors),
        seconds=round(seconds, 3),
        requests_per_s=round((args.requests - len(errors)) / seconds, 1) if seconds else 0.0,
        p50_ms=round(percentile(latencies, 0.50) * 1000, 2),
        p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
        error_samples=all_errors[:ERROR_SAMPLES],
    )


# -- the run -----------------------------------------------------------------------------------


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:>5}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


async def bench_all(args: argparse.Namespace, workdir: Path, err: Console) -> list[Result]:
    results: list[Result] = []
    secret = secrets.token_urlsafe(24)
    channels = telegram_config(secret, free_port()) if args.target == "telegram" else ""
    bare_port = free_port()
    bare_env = child_env({})
    bare = start_server(
        "bare", [sys.executable, "-c", BARE_SERVER, str(bare_port)], bare_env, bare_port, workdir
    )
    with running(bare):
        await wait_healthy(bare)
        with progress_bar(err) as progress:
            results.append(await load("bare", bare, args, progress, secret))

    hub_port = free_port()
    prefix = f"bench:{random.getrandbits(40):010x}:"
    env = hub_env(args, workdir, hub_port, prefix, channels)
    if args.database_url:
        migrate(env, workdir)
    hub = start_server("hub", [sys.executable, "-m", "hubcli.main", "up"], env, hub_port, workdir)
    try:
        with running(hub):
            await wait_healthy(hub)
            with progress_bar(err) as progress:
                results.append(await load("hub", hub, args, progress, secret))
    finally:
        if args.redis_url:
            forget_redis_keys(args.redis_url, prefix)
    return results


def _redact(url: str) -> str:
    """Drop the password from a URL before it is printed or written."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in userinfo else ''}@{host}"


def report(args: argparse.Namespace, results: list[Result], command: str) -> dict[str, Any]:
    out = Console()
    what = f"POST {target_path(args.target)}"
    if args.target != "form":  # the form title stays as it always was
        what = f"{args.target}, {what}"
    table = Table(title=f"hub bench: {what}, {args.connections} connections")
    for column in ("target", "requests", "errors", "req/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for r in results:
        table.add_row(
            r.target,
            str(r.requests),
            str(r.errors),
            f"{r.requests_per_s:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
        )
    out.print(table)
    by_name = {r.target: r for r in results}
    bare, hub = by_name["bare"], by_name["hub"]
    ratio = hub.requests_per_s / bare.requests_per_s if bare.requests_per_s else 0.0
    ratio_ok = ratio >= GOAL_RATIO
    p99_ok = hub.p99_ms <= GOAL_P99_MS

    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]MISS[/]"

    database = "sqlite (fresh file)" if not args.database_url else _redact(args.database_url)
    out.print(f"ratio hub/bare req/s: {ratio:.3f}   {verdict(ratio_ok)} (goal >= {GOAL_RATIO})")
    out.print(f"hub p99: {hub.p99_ms:.2f} ms   {verdict(p99_ok)} (goal <= {GOAL_P99_MS:.0f} ms)")
    redis_name = _redact(args.redis_url) if args.redis_url else "embedded"
    out.print(f"database: {database}; redis: {redis_name}; cpus: {os.cpu_count()}")
    out.print(f"command: {command}", highlight=False, markup=False, soft_wrap=True)
    for r in results:
        for sample in r.error_samples:
            out.print(f"{r.target} error: {sample}", highlight=False, markup=False)
    where: dict[str, Any] = {"form": FORM_ID}
    if args.target == "telegram":
        where = {"channel": TELEGRAM_CHANNEL, "users": TELEGRAM_USERS}
    return {
        "command": command,
        "target": args.target,
        **where,
        "connections": args.connections,
        "requests": args.requests,
        "warmup": args.warmup,
        "database": database,
        "redis": redis_name,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "results": {r.target: asdict(r) for r in results},
        "ratio": round(ratio, 4),
        "goals": {
            "ratio": GOAL_RATIO,
            "p99_ms": GOAL_P99_MS,
            "ratio_met": ratio_ok,
            "p99_met": p99_ok,
        },
    }


def command_line(args: argparse.Namespace) -> str:
    parts = ["hub", "bench"]
    if args.target != "form":
        parts += ["--target", args.target]
    parts += ["--connections", str(args.connections)]
    parts += ["--requests", str(args.requests), "--warmup", str(args.warmup)]
    if args.database_url:
        parts += ["--database-url", _redact(args.database_url)]
    if args.redis_url:
        parts += ["--redis-url", _redact(args.redis_url)]
    if args.json:
        parts += ["--json", args.json]
    return shlex.join(parts)


def run_bench(args: argparse.Namespace) -> int:
    """Bare handler first, then the hub; print the table and the goals; 1 on too many errors."""
    from hubcli.bench_reports import DATA_TARGETS, run_data_bench

    if args.target in DATA_TARGETS:  # no HTTP load: reports on generated leads, CSV import
        return run_data_bench(args)
    if args.target == "reminders":  # reminder bursts and speed to lead: bench_reminders.py
        from hubcli.bench_reminders import run_reminder_bench

        return run_reminder_bench(args)
    if args.target == "email":  # IMAP ingest: hubcli/bench_email.py
        from hubcli.bench_email import run_email_bench

        return run_email_bench(args)
    err = Console(stderr=True)
    if args.database_url:
        total = args.warmup + args.requests
        rows = (
            f"{total} bench contacts, leads and reminders"
            if args.target == "form"
            else f"{min(total, TELEGRAM_USERS)} bench contacts with {total} Telegram messages"
        )
        err.print(
            f"[yellow]warning:[/] the hub is migrated and benched on {_redact(args.database_url)}:"
            f" {rows} stay in its tables"
        )
    command = command_line(args)
    with tempfile.TemporaryDirectory(prefix=workdir_prefix()) as tmp:
        try:
            results = asyncio.run(bench_all(args, Path(tmp), err))
        except BenchError as exc:
            print(f"hub bench: {exc}", file=sys.stderr)
            return 2
    figures = report(args, results, command)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    worst = max(r.errors / r.requests for r in results)
    if worst > MAX_ERROR_SHARE:
        print(
            f"hub bench: too many errors ({worst:.2%} of requests, at most "
            f"{MAX_ERROR_SHARE:.1%} allowed)",
            file=sys.stderr,
        )
        return 1
    return 0
