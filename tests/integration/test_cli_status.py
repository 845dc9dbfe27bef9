"""``overlord status`` end to end: a real subprocess on the kit workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overlord.cli.app import main
from tests.kit import Workspace

ROOT = Path(__file__).resolve().parents[2]


def overlord(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overlord", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_json_is_one_document(workspace: Workspace) -> None:
    proc = overlord("status", "--json", "--config", str(workspace.config_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    rows = {row["name"]: row for row in doc["projects"]}
    assert list(rows) == ["core", "api", "web", "tools"]
    assert rows["api"]["behind"] == 1 and rows["web"]["ahead"] == 1
    assert [b["name"] for b in rows["core"]["stale_branches"]] == ["feature/old-merged"]
    assert [b["name"] for b in rows["core"]["old_unmerged"]] == ["feature/old-unmerged"]


def test_names_are_resolved(workspace: Workspace) -> None:
    proc = overlord("status", "WE", "co", "--json", "--config", str(workspace.config_path))
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)["projects"]] == ["core", "web"]


def test_table(workspace: Workspace) -> None:
    proc = overlord("status", "--config", str(workspace.config_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("core", "api", "web", "tools"):
        assert name in out
    assert "↓1" in out and "↑1" in out
    assert "develop" in out and "clean" in out and "v0.1.0" in out
    assert "1 unmerged" in out


def test_unknown_project_exits_2_with_one_line(workspace: Workspace) -> None:
    proc = overlord("status", "nosuch", "--config", str(workspace.config_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nosuch" in errors[0]
    assert "core" in proc.stderr  # candidates listed


def test_missing_config_exits_2(tmp_path: Path) -> None:
    proc = overlord("status", "--config", str(tmp_path / "none.yml"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_error_rows_still_exit_0(workspace: Workspace, tmp_path: Path) -> None:
    data = yaml.safe_load(workspace.config_path.read_text())
    data["projects"]["gone"] = {"path": str(tmp_path / "missing")}
    path = tmp_path / "with-missing.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    table = overlord("status", "--config", str(path))
    assert table.returncode == 0, table.stderr
    assert "gone" in table.stdout and "error" in table.stdout
    proc = overlord("status", "--json", "--config", str(path))
    assert proc.returncode == 0
    gone = json.loads(proc.stdout)["projects"][-1]
    assert gone["name"] == "gone" and gone["ok"] is False and "no such directory" in gone["error"]


def test_status_does_not_import_heavy_modules(workspace: Workspace) -> None:
    code = (
        "import sys\n"
        "from overlord.cli.app import main\n"
        f"rc = main(['status', '--json', '--config', {str(workspace.config_path)!r}])\n"
        "heavy = sorted(m for m in ('celery', 'docker', 'sqlalchemy', 'kombu') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr


def test_in_process(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json", "api", "--config", str(workspace.config_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in doc["projects"]] == ["api"]
    assert main(["status", "zzz", "--config", str(workspace.config_path)]) == 2
