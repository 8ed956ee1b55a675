"""`hub bench --target reports|import` on a few generated rows: every report runs on the
generated leads, and the CSV imports twice without duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.reports.registry import REPORTS
from hubcli.main import main
from tests.hubcli.test_cli import cli_env, restore_logging  # noqa: F401  (fixtures)


def test_reports_bench(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    out = cli_env / "reports.json"
    assert main(["bench", "--target", "reports", "--rows", "400", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["command"] == "hub bench --target reports --rows 400"
    timed = {(r["report"], r["days"]) for r in figures["results"]}
    assert timed == {(name, days) for name in REPORTS for days in (30, 90)}
    funnel = [r for r in figures["results"] if r["report"] == "funnel" and r["days"] == 90]
    assert funnel[0]["period_leads"] == 400  # every generated lead is within 90 days
    assert "reports over 400 leads" in capsys.readouterr().out


def test_import_bench(cli_env: Path) -> None:  # noqa: F811
    out = cli_env / "import.json"
    assert main(["bench", "--target", "import", "--rows", "300", "--json", str(out)]) == 0
    first, again = json.loads(out.read_text())["results"]
    assert (first["rows"], first["created"], first["rejected"]) == (300, 297, 3)
    assert (again["created"], again["matched"]) == (0, 297)
