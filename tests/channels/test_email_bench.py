"""`hub bench --target email` end to end with a tiny mailbox: every mail committed with its
contact and lead, the figure written, and no child process (hub, IMAP server) left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubcli.main import main
from tests.hubcli.test_bench import bench_processes


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_email_bench_commits_every_mail_and_leaves_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_processes() == []
    out = tmp_path / "email.json"
    code = main(["bench", "--target", "email", "--mails", "30", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    figures = json.loads(out.read_text())
    assert figures["mails"] == 30 and figures["mails_per_s"] > 0 and figures["seconds"] > 0
    assert figures["command"] == f"hub bench --target email --mails 30 --json {out}"
    assert "30 mails committed (item, contact, lead)" in printed
    assert bench_processes() == []


def test_email_bench_refuses_an_empty_mailbox(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--target", "email", "--mails", "0"]) == 2
    assert "--mails must be at least 1" in capsys.readouterr().err
