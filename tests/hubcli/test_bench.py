"""`hub bench` end to end with tiny numbers: both targets measured, no child process left."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubcli.bench import MARKER_ENV, workdir_prefix
from hubcli.main import main


def bench_processes() -> list[str]:
    """Processes this test's bench left: descendants of this process (zombies too), and any
    process carrying the bench's marker or work dir (an orphaned embedded Redis)."""
    me = os.getpid()
    marker = f"{MARKER_ENV}={me}".encode()
    workdir = workdir_prefix(me).encode()
    parents: dict[int, int] = {}
    suspects: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[pid] = int(fields[1])
        text = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
        suspects[pid] = f"{pid} [{fields[0]}] {text}"
        if marker in environ or workdir in cmdline:
            suspects[pid] += " (marked)"

    def descends_from_me(pid: int) -> bool:
        for _ in range(64):
            pid = parents.get(pid, 0)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False

    return sorted(
        line for pid, line in suspects.items() if line.endswith("(marked)") or descends_from_me(pid)
    )


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_bench_measures_both_targets_and_leaves_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_processes() == []
    out = tmp_path / "bench.json"
    argv = ["bench", "--requests", "200", "--warmup", "20", "--connections", "4"]
    code = main([*argv, "--json", str(out)])

    printed = capsys.readouterr().out
    assert code == 0, printed
    figures = json.loads(out.read_text())
    assert set(figures["results"]) == {"bare", "hub"}
    for target in ("bare", "hub"):
        result = figures["results"][target]
        assert result["requests"] == 200
        assert result["errors"] == 0, result["error_samples"]
        assert result["warmup_errors"] == 0, result["error_samples"]
        assert result["requests_per_s"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert figures["ratio"] > 0
    assert figures["connections"] == 4
    assert "hub bench --connections 4 --requests 200 --warmup 20" in figures["command"]
    assert "req/s" in printed and "p99" in printed and "command: hub bench" in printed
    assert bench_processes() == []


def test_bench_options_parse() -> None:
    from hubcli.main import build_parser

    args = build_parser().parse_args(["bench"])
    assert (args.connections, args.requests, args.warmup) == (32, 20000, 500)
    assert args.database_url is None and args.redis_url is None and args.json is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--connections", "0"])
