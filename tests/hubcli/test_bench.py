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


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_bench_telegram_target_measures_both_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--target", "telegram", "--requests", "60", "--warmup", "10"]
    code = main([*argv, "--connections", "4", "--json", str(out)])

    printed = capsys.readouterr().out
    assert code == 0, printed
    figures = json.loads(out.read_text())
    assert figures["target"] == "telegram" and figures["channel"] == "benchtg"
    assert set(figures["results"]) == {"bare", "hub"}
    for target in ("bare", "hub"):
        result = figures["results"][target]
        assert result["requests"] == 60
        # A wrong secret or a rejected Update would count here (401/400).
        assert result["errors"] == 0, result["error_samples"]
        assert result["warmup_errors"] == 0, result["error_samples"]
        assert result["requests_per_s"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert "hub bench --target telegram --connections 4 --requests 60" in figures["command"]
    assert "hub bench: telegram, POST /webhooks/telegram/benchtg" in printed
    assert bench_processes() == []


def test_telegram_updates_are_unique_and_come_from_returning_users() -> None:
    from hubcli.bench import TELEGRAM_VERIFY_HEADER, TelegramUpdates

    updates = TelegramUpdates(500, "s3cret", users=20)
    seen = [updates.next() for _ in range(500)]
    assert {headers[TELEGRAM_VERIFY_HEADER] for _, headers in seen} == {"s3cret"}
    bodies = [body for body, _ in seen]
    assert len({body["update_id"] for body in bodies}) == 500
    assert len({body["message"]["message_id"] for body in bodies}) == 500
    senders = {body["message"]["from"]["id"] for body in bodies}
    assert len(senders) <= 20
    for body in bodies:
        message = body["message"]
        assert message["chat"]["id"] == message["from"]["id"] and message["text"]


def test_bench_options_parse() -> None:
    from hubcli.main import build_parser

    args = build_parser().parse_args(["bench"])
    assert (args.connections, args.requests, args.warmup) == (32, 20000, 500)
    assert args.database_url is None and args.redis_url is None and args.json is None
    assert args.target == "form"
    assert build_parser().parse_args(["bench", "--target", "telegram"]).target == "telegram"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--target", "sms"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--connections", "0"])


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_bench_reminders_fires_a_burst_once_and_times_speed_to_lead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--target", "reminders", "--reminders", "300"]
    code = main([*argv, "--lead-rate", "5", "--lead-seconds", "2", "--json", str(out)])

    printed = capsys.readouterr().out
    assert code == 0, printed
    figures = json.loads(out.read_text())
    burst = figures["burst"]
    assert burst["reminders"] == burst["fired"] == burst["events_once"] == 300
    assert burst["events_missing"] == burst["events_twice_or_more"] == 0
    assert 0 <= burst["p50_late_s"] <= burst["p99_late_s"] <= burst["max_late_s"]
    lead = figures["speed_to_lead"]
    assert lead["leads"] == 10 and lead["post_errors"] == 0
    for key in ("form_answer", "reminder_due_event", "telegram_notice"):
        assert lead[key]["count"] == 10, key
        assert 0 < lead[key]["p50_s"] <= lead[key]["p99_s"], key
    assert "hub bench --target reminders --reminders 300" in figures["command"]
    assert "speed to lead" in printed and "goal" in printed
    assert bench_processes() == []
