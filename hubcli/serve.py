"""Running the hub: the web server, the worker, or both with an embedded Redis (`hub up`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import signal
import subprocess
import sys
from typing import IO, Any

import structlog
from aiohttp import web
from arq.worker import Worker

from hub import embedded_redis
from hub.db import Database
from hub.migrate import upgrade
from hub.runtime import Runtime, redis_url
from hub.settings import Settings
from webhooks.app import make_app
from workers.settings import make_worker, stop_worker

log = structlog.get_logger(__name__)


class StartupError(Exception):
    """The hub cannot start as configured; the message says what to fix."""


def migrate_if_empty_sqlite(settings: Settings) -> None:
    """A new laptop install needs no separate `hub migrate`; PostgreSQL is migrated on purpose."""
    if settings.is_sqlite:
        upgrade(settings.database_url)


def require_redis(settings: Settings) -> None:
    if settings.redis_url is None and not embedded_redis.is_running(settings.data_dir):
        raise StartupError(
            "no Redis: set HUB_REDIS_URL (or redis_url in hub.toml), "
            "or run `hub up`, which starts an embedded one"
        )


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _start_web(runtime: Runtime) -> web.AppRunner:
    app = make_app(runtime)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, runtime.settings.host, runtime.settings.port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen on {runtime.settings.host}:{runtime.settings.port}: {exc.strerror}; "
            "set HUB_PORT (or port in hub.toml) to a free port"
        ) from None
    return runner


async def _stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    await stop_worker(worker)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def url_of(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


async def serve(settings: Settings, *, web_server: bool, worker: bool, banner: str = "") -> None:
    """Run until SIGINT/SIGTERM, then stop what was started, in reverse order."""
    stop = _stop_event()
    db = Database(settings.database_url)
    runtime = Runtime.open(settings, db=db)
    worker_runtime = Runtime.open(settings, db=db)  # its own Redis pool; closed with it
    runner = None
    worker_task = None
    arq_worker = None
    try:
        if web_server:
            runner = await _start_web(runtime)
            log.info("web_started", url=url_of(settings))
        if worker:
            arq_worker = make_worker(worker_runtime)
            worker_task = asyncio.create_task(arq_worker.async_run())
            log.info("worker_started", queue=arq_worker.queue_name)
        if banner:
            print(banner, flush=True)
        waiter = asyncio.create_task(stop.wait())
        watched: set[asyncio.Future[Any]] = {waiter}
        if worker_task is not None:
            watched.add(worker_task)
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if worker_task is not None and worker_task in done and worker_task.exception():
            raise StartupError(f"the worker stopped: {worker_task.exception()}")
        log.info("stopping")
    finally:
        if arq_worker is not None and worker_task is not None:
            await _stop_worker(arq_worker, worker_task)
        if runner is not None:
            await runner.cleanup()  # closes `runtime` through the app's cleanup
        else:
            await runtime.close()
        await worker_runtime.redis.aclose()
        await db.dispose()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(0)  # unwinds through the finally blocks that stop the embedded Redis


def lock_data_dir(settings: Settings) -> IO[bytes]:
    """One `hub up` per data dir: an exclusive lock held for the life of the process, taken
    before migrations, so a second hub neither migrates under the first nor takes its Redis."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(settings.data_dir / "hub.lock", "wb")  # noqa: SIM115  # held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StartupError(
            f"another hub is running on the data dir {settings.data_dir.resolve()}: "
            "stop it first, or set HUB_DATA_DIR to another directory"
        ) from None
    return handle


def up(settings: Settings, demo: bool = False) -> int:
    """Everything on one machine: migrations, embedded Redis if none is configured, web, worker."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # until serve() installs its own handler
    lock = lock_data_dir(settings)
    redis_proc: subprocess.Popen[bytes] | None = None
    try:
        migrate_if_empty_sqlite(settings)
        if settings.redis_url is None:
            redis_proc = embedded_redis.start(settings.data_dir)
            log.info("embedded_redis_started", url=redis_url(settings))
        _run_up(settings, demo)
    finally:
        if redis_proc is not None:
            embedded_redis.stop(redis_proc)
        lock.close()
    return 0


def _run_up(settings: Settings, demo: bool) -> None:
    banner = f"hub is running at {url_of(settings)}  (Ctrl+C stops it)"
    if not demo and not settings.forms and not settings.channels:
        banner += (
            "\nnothing to receive yet: copy config/hub.example.toml to hub.toml and add a form "
            "or a channel, or try `hub up --demo`"
        )
    if demo:
        from hubcli.demo import seed_demo

        settings, login = asyncio.run(seed_demo(settings))
        banner += f"\ndemo login: {login}"
    asyncio.run(serve(settings, web_server=True, worker=True, banner=banner))


def with_demo_form(settings: Settings) -> Settings:
    from hub.settings import FormConfig

    if "demo" in settings.forms:
        return settings
    form = FormConfig(id="demo", allowed_origins=("*",), rate_limit="30/minute")
    return dataclasses.replace(settings, forms={**settings.forms, "demo": form})


def fail(message: str) -> int:
    print(f"hub: {message}", file=sys.stderr)
    return 2
