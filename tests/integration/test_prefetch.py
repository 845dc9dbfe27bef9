"""``overlord status``'s reads started before the CLI loads: used only where the validated
configuration asks the same, and never in the way of a configuration error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overlord.adapters.git import prefetch
from overlord.adapters.git.scanner import as_json, scan
from overlord.core import config as config_mod
from tests.kit import Workspace, make_dirty

ROOT = Path(__file__).resolve().parents[2]


def _overlord(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overlord", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env or dict(os.environ),
    )


def _started(config: Path) -> prefetch.Prefetch:
    prefetch.begin(["status", "--json", "--config", str(config)])
    early = prefetch.started()
    assert early is not None and prefetch.started() is None
    return early


def _json(rows: list) -> list:  # type: ignore[type-arg]
    doc = as_json(rows)["projects"]
    for row in doc:
        for branch in row["stale_branches"] + row["old_unmerged"]:
            branch.pop("age_days")
    return doc


def test_prefetched_rows_are_the_rows(workspace: Workspace) -> None:
    make_dirty(workspace.repos["api"])
    early = _started(workspace.config_path)
    cfg = config_mod.load(workspace.config_path)
    rows = scan(cfg, early=early)
    assert early.calls == {}  # every read was adopted
    assert _json(rows) == _json(scan(cfg))
    assert rows[1].dirty


def test_reads_of_paths_the_validated_config_lacks_are_dropped(
    workspace: Workspace, tmp_path: Path
) -> None:
    data = yaml.safe_load(workspace.config_path.read_text())
    data["projects"]["extra"] = {"path": str(workspace.repos["core"].parent / "api")}
    data["projects"]["elsewhere"] = {"path": str(tmp_path / "other")}
    wider = workspace.config_path.parent / "wider.yml"
    wider.write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "other").mkdir()
    early = _started(wider)
    cfg = config_mod.load(workspace.config_path)  # the one the command validates
    rows = scan(cfg, early=early)
    left = {argv[2] for argv in early.calls}
    assert left == {str(tmp_path / "other")}
    assert _json(rows) == _json(scan(cfg))


def test_reads_in_another_environment_are_dropped(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = _started(workspace.config_path)
    monkeypatch.setenv("SOMETHING_NEW", "1")
    cfg = config_mod.load(workspace.config_path)
    rows = scan(cfg, early=early)
    assert len(early.calls) == 2 * len(cfg.projects)  # none adopted
    assert all(r.ok for r in rows)


def test_secret_variables_named_by_the_file_never_reach_early_git(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(workspace.config_path.read_text())
    data["models"] = {
        "m": {"endpoint": "http://127.0.0.1:1/v1", "model": "x", "tier": "local"},
        "k": {
            "endpoint": "http://127.0.0.1:1/v1",
            "model": "y",
            "tier": "cloud-fast",
            "api_key_env": "PREFETCH_TEST_KEY",
        },
    }
    path = workspace.config_path.parent / "keyed.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("PREFETCH_TEST_KEY", "sk-not-for-git-0123456789")
    early = _started(path)
    assert early.calls
    assert all("PREFETCH_TEST_KEY" not in call.env for call in early.calls.values())
    scan(config_mod.load(path), early=early)
    assert early.calls == {}


@pytest.mark.parametrize(
    "text",
    [
        "projects:\n  a: {path: /tmp, colour: red}\n",  # unknown key
        "projects: [1, 2\n",  # YAML syntax
        "projects:\n  a: {path: /tmp, depends_on: [a]}\n",
        "- just\n- a list\n",
        "projects:\n  a: {path: [1]}\n",
    ],
)
def test_bad_config_still_fails_cleanly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    proc = _overlord("status", "--json", "--config", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_binary_config_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(b"\xff\xfe projects")
    proc = _overlord("status", "--config", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_status_command_asks_each_repository_once(workspace: Workspace, tmp_path: Path) -> None:
    real = shutil.which("git")
    assert real
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "calls.log"
    (shim_dir / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (shim_dir / "git").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = _overlord("status", "--json", "--config", str(workspace.config_path), env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["projects"]
    assert [r["name"] for r in rows] == ["core", "api", "web", "tools"]
    calls = log.read_text().splitlines()
    for path in workspace.repos.values():
        mine = [c for c in calls if c.startswith(f"-C {path} ") and " status " in c]
        assert len(mine) == 1, calls
