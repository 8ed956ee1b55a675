"""`hub up` as a user runs it: a real process tree on SQLite and the embedded Redis.

Each test starts `python -m hubcli.main up` in its own session (so a failing test can kill the
whole group), waits for /healthz, talks HTTP to it, stops it with a signal and checks that every
process it started is gone and that a restart on the same data dir finds what was stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from hub.embedded_redis import SOCKET_NAME, UNIX_PATH_MAX, socket_path
from hubcli.bench import free_port

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find child processes"
)

HEALTHY_WITHIN = 30.0
STOPS_WITHIN = 15.0
PHONE = "+998901234567"
FORM_BODY = {"name": "Aziz Rahimov", "phone": "90 123 45 67", "message": "please call me"}
IDEMPOTENCY_KEY = "test-up-submission-0001"
HUB_TOML = """\
default_region = "UZ"

[forms.callback]
fields = ["name", "phone", "email", "message"]
required = ["phone"]
allowed_origins = ["*"]
rate_limit = "100/minute"
"""
# No proxy, whatever the environment says: the hub is on 127.0.0.1.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    starttime: int
    comm: str


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 1 :].split()
    # fields[0] is stat field 3 (state), so field N is fields[N - 3]: ppid 4, starttime 22.
    return Proc(pid, int(fields[1]), fields[0], int(fields[19]), comm)


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (proc := read_proc(int(entry.name))) is not None:
            table[proc.pid] = proc
    return table


def descendants(root: int) -> list[Proc]:
    """Every process below `root` (children, their children, ...), from /proc."""
    table = process_table()
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def still_alive(proc: Proc) -> bool:
    """The same process (not a reused pid) still exists and is not a zombie."""
    now = read_proc(proc.pid)
    return now is not None and now.starttime == proc.starttime and now.state not in ("Z", "X")


def wait_until_gone(procs: list[Proc], timeout: float = 5.0) -> list[Proc]:
    """Orphans are reparented and reaped asynchronously: give them a moment."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if still_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if still_alive(p)]
    return alive


def redis_answers(path: Path) -> bool:
    if not path.exists():
        return False
    client = redis.Redis(unix_socket_path=str(path), socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # http://127.0.0.1 only
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with HTTP.open(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, dict(exc.headers), exc.read())


# --- running hub ------------------------------------------------------------------------------


@dataclass
class Hub:
    proc: subprocess.Popen[bytes]
    base: str
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def explain(self) -> str:
        return (
            f"hub up (pid {self.proc.pid}, exit code {self.proc.poll()})\n"
            f"--- stdout ---\n{self.stdout()}\n--- stderr ---\n{self.stderr()}"
        )

    def wait_healthy(self, timeout: float = HEALTHY_WITHIN) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"hub up exited before it was healthy ({last})\n{self.explain()}")
            try:
                reply = http("GET", f"{self.base}/healthz", timeout=2)
            except OSError as exc:  # URLError, refused, reset: not listening yet
                last = repr(exc)
            else:
                if reply.status == 200:
                    return
                last = f"/healthz {reply.status}: {reply.body[:300]!r}"
            time.sleep(0.1)
        pytest.fail(f"hub up was not healthy within {timeout}s ({last})\n{self.explain()}")

    def wait_for_line(self, prefix: str, timeout: float = HEALTHY_WITHIN) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout().splitlines():
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no {prefix!r} line on stdout within {timeout}s\n{self.explain()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, group: bool = False) -> int:
        """Send `sig` (to the hub, or to its whole process group like Ctrl+C in a terminal)
        and wait for it to exit; fail if it does not within STOPS_WITHIN seconds."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOPS_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"hub up did not exit within {STOPS_WITHIN}s of {sig.name}\n{self.explain()}"
            )


@dataclass
class Launcher:
    """Starts hubs in tmp_path and makes sure, whatever happens, that none survives the test."""

    workdir: Path
    port: int = field(default_factory=free_port)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    seen: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = self.workdir / "hub.toml"
        self.config.write_text(HUB_TOML)
        self.data_dir = self.workdir / "var"

    def env(self, port: int | None = None) -> dict[str, str]:
        # Nothing of the caller's hub configuration leaks in: SQLite in the data dir, and the
        # embedded Redis since HUB_REDIS_URL is not set.
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(
            HUB_CONFIG=str(self.config),
            HUB_DATA_DIR=str(self.data_dir),
            HUB_HOST="127.0.0.1",
            HUB_PORT=str(port or self.port),
            HUB_LOG_LEVEL="warning",
        )
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hubcli.main", *args]

    def up(self, *args: str, port: int | None = None) -> Hub:
        n = len(self.started)
        out, err = self.workdir / f"up{n}.out", self.workdir / f"up{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(  # our own CLI
                self.command("up", *args),
                cwd=self.workdir,
                env=self.env(port),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        self.started.append(proc)
        return Hub(proc, f"http://127.0.0.1:{port or self.port}", out, err)

    def run(self, *args: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # our own CLI
            self.command(*args),
            cwd=self.workdir,
            env=self.env(port),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def children(self, hub: Hub) -> list[Proc]:
        found = descendants(hub.proc.pid)
        self.seen.extend(found)
        return found

    def cleanup(self) -> None:
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        for child in self.seen:
            if still_alive(child):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.cleanup()


def submit_form(hub: Hub) -> Reply:
    return http(
        "POST",
        f"{hub.base}/forms/callback",
        FORM_BODY,
        headers={"Idempotency-Key": IDEMPOTENCY_KEY},
    )


def login(hub: Hub, email: str, password: str) -> str:
    reply = http("POST", f"{hub.base}/api/auth/login", {"email": email, "password": password})
    assert reply.status == 200, reply.body
    token: str = reply.json()["token"]
    return token


def running_hub_children(launcher: Launcher, hub: Hub) -> list[Proc]:
    """The children of a healthy hub: the embedded Redis on its socket in the data dir."""
    children = launcher.children(hub)
    redis_servers = [c for c in children if c.comm.startswith("redis-server")]
    assert len(redis_servers) == 1, f"expected one embedded redis-server child, got {children}"
    assert redis_servers[0].ppid == hub.proc.pid, "the embedded Redis is the hub's own child"
    sock = launcher.data_dir / SOCKET_NAME
    assert len(str(sock.resolve())) <= UNIX_PATH_MAX, "tmp_path too deep for this test"
    assert socket_path(launcher.data_dir) == sock.resolve()
    assert sock.is_socket(), f"no Redis socket at {sock}"
    assert redis_answers(sock)
    return children


def assert_stopped_cleanly(launcher: Launcher, hub: Hub, children: list[Proc], code: int) -> None:
    assert code == 0, f"hub up exited with {code}, not 0\n{hub.explain()}"
    leftovers = wait_until_gone(children)
    assert leftovers == [], f"processes left behind by hub up: {leftovers}\n{hub.explain()}"
    assert not redis_answers(launcher.data_dir / SOCKET_NAME)
    assert "Traceback" not in hub.stderr(), hub.explain()


# --- tests ----------------------------------------------------------------------------------


def test_up_runs_everything_and_sigterm_leaves_no_children(launcher: Launcher) -> None:
    hub = launcher.up()
    hub.wait_healthy()
    assert f"hub is running at {hub.base}" in hub.stdout()
    assert (launcher.data_dir / "hub.db").is_file(), "migrations ran on SQLite in the data dir"
    children = running_hub_children(launcher, hub)

    reply = submit_form(hub)
    assert reply.status == 201, reply.body
    created = reply.json()
    assert created["lead_id"] and created["contact_id"]
    assert created["duplicate"] is False

    code = hub.stop(signal.SIGTERM)
    assert_stopped_cleanly(launcher, hub, children, code)
    assert not (launcher.data_dir / SOCKET_NAME).exists(), "the Redis socket file is left over"


def test_up_again_finds_what_it_stored(launcher: Launcher) -> None:
    first = launcher.up()
    first.wait_healthy()
    children = running_hub_children(launcher, first)
    reply = submit_form(first)
    assert reply.status == 201, reply.body
    created = reply.json()
    assert_stopped_cleanly(launcher, first, children, first.stop(signal.SIGTERM))

    made = launcher.run(
        "user", "create", "--email", "op@example.com", "--password", "a-long-password-1",
        "--role", "operator", "--name", "Operator",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "op@example.com" in made.stdout

    second = launcher.up()
    second.wait_healthy()
    children = running_hub_children(launcher, second)
    again = submit_form(second)
    assert again.status == 201, again.body
    assert again.json()["duplicate"] is True
    assert again.json()["lead_id"] == created["lead_id"]
    assert again.json()["contact_id"] == created["contact_id"]

    token = login(second, "op@example.com", "a-long-password-1")
    contacts = http("GET", f"{second.base}/api/contacts", token=token)
    assert contacts.status == 200, contacts.body
    items = contacts.json()["items"]
    assert [c["id"] for c in items] == [created["contact_id"]]
    assert items[0]["phones"] == [PHONE]
    assert items[0]["name"] == FORM_BODY["name"]
    leads = http("GET", f"{second.base}/api/leads", token=token).json()["items"]
    assert [lead["id"] for lead in leads] == [created["lead_id"]]

    assert_stopped_cleanly(launcher, second, children, second.stop(signal.SIGTERM))


def demo_counts(hub: Hub) -> dict[str, int]:
    line = hub.wait_for_line("demo login:")
    match = re.match(r"demo login:\s*(\S+@\S+)\s*/\s*(\S+)", line)
    assert match, f"cannot read e-mail and password from {line!r}"
    hub.wait_healthy()
    token = login(hub, match[1], match[2])
    counts = {}
    for what in ("contacts", "conversations", "leads"):
        reply = http("GET", f"{hub.base}/api/{what}?limit=500", token=token)
        assert reply.status == 200, reply.body
        counts[what] = len(reply.json()["items"])
    page = http("GET", f"{hub.base}/forms/demo")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b'data-hub-form="demo"' in page.body
    return counts


def test_up_demo_prints_login_and_seeds(launcher: Launcher) -> None:
    first = launcher.up("--demo")
    counts = demo_counts(first)
    assert f"hub is running at {first.base}" in first.stdout()
    assert counts["conversations"] >= 3
    assert counts["leads"] >= 1
    assert counts["contacts"] >= 1
    children = running_hub_children(launcher, first)
    assert_stopped_cleanly(launcher, first, children, first.stop(signal.SIGTERM))

    second = launcher.up("--demo")
    assert demo_counts(second) == counts, "a second --demo seeded things twice"
    children = running_hub_children(launcher, second)
    assert_stopped_cleanly(launcher, second, children, second.stop(signal.SIGTERM))


def test_second_up_on_same_data_dir_refuses_clearly(launcher: Launcher) -> None:
    first = launcher.up()
    first.wait_healthy()
    children = running_hub_children(launcher, first)

    # Another port, so that only the data dir can be the reason it refuses.
    second = launcher.run("up", port=free_port())
    assert second.returncode != 0, second.stdout
    assert str(launcher.data_dir.resolve()) in second.stderr, second.stderr
    assert "Traceback" not in second.stderr, second.stderr

    # The first hub is untouched: its Redis still answers on its socket.
    assert all(still_alive(c) for c in children)
    assert redis_answers(launcher.data_dir / SOCKET_NAME)
    first.wait_healthy()
    assert submit_form(first).status == 201
    assert_stopped_cleanly(launcher, first, children, first.stop(signal.SIGTERM))


@pytest.mark.parametrize("group", [False, True], ids=["kill-hub", "ctrl-c-process-group"])
def test_sigint_also_stops_cleanly(launcher: Launcher, group: bool) -> None:
    hub = launcher.up()
    hub.wait_healthy()
    children = running_hub_children(launcher, hub)
    assert submit_form(hub).status == 201
    code = hub.stop(signal.SIGINT, group=group)
    assert_stopped_cleanly(launcher, hub, children, code)

    # And it comes back on the same data dir with what it stored.
    again = launcher.up()
    again.wait_healthy()
    children = running_hub_children(launcher, again)
    assert submit_form(again).json()["duplicate"] is True
    assert_stopped_cleanly(launcher, again, children, again.stop(signal.SIGTERM))


def test_embedded_redis_keeps_its_data_across_restart(launcher: Launcher) -> None:
    """Queued jobs (outbound deliveries and their retries) live in the embedded Redis: a clean
    restart must not lose them, so the server saves its data set in the data dir on shutdown."""
    hub = launcher.up()
    hub.wait_healthy()
    children = running_hub_children(launcher, hub)
    sock = launcher.data_dir / SOCKET_NAME
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
    try:
        client.set("hub:test-up:marker", "kept")
    finally:
        client.close()
    assert_stopped_cleanly(launcher, hub, children, hub.stop(signal.SIGTERM))
    assert (launcher.data_dir / "redis.rdb").is_file(), "the embedded Redis saved nothing"

    again = launcher.up()
    again.wait_healthy()
    children = running_hub_children(launcher, again)
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
    try:
        assert client.get("hub:test-up:marker") == b"kept"
    finally:
        client.close()
    assert_stopped_cleanly(launcher, again, children, again.stop(signal.SIGTERM))


def test_sigkill_leaves_no_redis_and_up_again_works(launcher: Launcher) -> None:
    """Nothing can run in a SIGKILLed hub; the embedded Redis still goes (PR_SET_PDEATHSIG),
    and the next `hub up` starts over the stale socket file and finds what was stored."""
    hub = launcher.up()
    hub.wait_healthy()
    children = running_hub_children(launcher, hub)
    created = submit_form(hub).json()
    hub.proc.kill()
    assert hub.proc.wait(STOPS_WITHIN) == -signal.SIGKILL
    assert wait_until_gone(children) == [], "the embedded Redis outlived a SIGKILLed hub"

    again = launcher.up()
    again.wait_healthy()
    children = running_hub_children(launcher, again)
    reply = submit_form(again).json()
    assert reply["duplicate"] is True
    assert reply["lead_id"] == created["lead_id"]
    assert_stopped_cleanly(launcher, again, children, again.stop(signal.SIGTERM))


def test_sigterm_during_start_up_leaves_no_children(launcher: Launcher) -> None:
    """SIGTERM as soon as the embedded Redis exists, before the hub is serving."""
    hub = launcher.up("--demo")
    deadline = time.monotonic() + HEALTHY_WITHIN
    children: list[Proc] = []
    while not children and time.monotonic() < deadline and hub.proc.poll() is None:
        children = [c for c in launcher.children(hub) if c.comm.startswith("redis-server")]
        time.sleep(0.01)
    assert children, f"no embedded redis-server appeared\n{hub.explain()}"
    code = hub.stop(signal.SIGTERM)
    # Before the event loop owns the signal, Python's default action ends the process (-15).
    assert code in (0, -signal.SIGTERM), hub.explain()
    assert wait_until_gone(children) == [], "the embedded Redis outlived the hub"

    again = launcher.up()
    again.wait_healthy()
    children = running_hub_children(launcher, again)
    assert_stopped_cleanly(launcher, again, children, again.stop(signal.SIGTERM))


def test_two_ups_started_together_one_refuses(launcher: Launcher) -> None:
    first = launcher.up()
    second = launcher.up(port=free_port())
    deadline = time.monotonic() + HEALTHY_WITHIN
    while time.monotonic() < deadline and all(h.proc.poll() is None for h in (first, second)):
        with contextlib.suppress(OSError):  # both serving: no need to wait any longer
            if all(
                http("GET", f"{h.base}/healthz", timeout=2).status == 200 for h in (first, second)
            ):
                break
        time.sleep(0.1)
    running = [h for h in (first, second) if h.proc.poll() is None]
    stopped = [h for h in (first, second) if h.proc.poll() is not None]
    both = f"{first.explain()}\n{second.explain()}"
    assert len(running) == 1 and len(stopped) == 1, f"exactly one hub must run\n{both}"
    assert stopped[0].proc.returncode == 2, f"the other must refuse\n{both}"
    assert str(launcher.data_dir.resolve()) in stopped[0].stderr(), both
    running[0].wait_healthy()
