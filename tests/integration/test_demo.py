"""`overlord demo [DIR]` and ``overlord.demo``: a first-run workspace on a fresh machine."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from overlord import demo
from overlord.cli.app import main
from overlord.core import config as config_mod
from overlord.core.graph import DependencyGraph
from tests.kit import git, snapshot

NAMES = ["core", "api", "web", "tools"]


def _counts(repo: Path, branch: str) -> tuple[int, int]:
    out = git(repo, "rev-list", "--left-right", "--count", f"{branch}...{branch}@{{u}}")
    ahead, behind = out.split()
    return int(ahead), int(behind)


def _tree(root: Path) -> list[Path]:
    return [*sorted((root / "repos").iterdir()), *sorted((root / "remotes").iterdir())]


def test_demo_creates_workspace_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "my demo"
    assert main(["demo", str(dest)]) == 0
    out = capsys.readouterr().out
    cfg_path = dest / "overlord.yml"
    config = config_mod.load(cfg_path)
    assert list(config.projects) == NAMES
    graph = DependencyGraph(config)
    assert graph.upstream("web") == ["core", "api"]
    assert graph.affected_by("core") == ["api", "web"]
    assert graph.affected_by("tools") == []
    quoted = shlex.quote(str(cfg_path))
    for command in ("status", "graph", 'dispatch "run tests across all projects"'):
        assert f"overlord --config {quoted} {command}" in out
    assert f"overlord --config {quoted} release core 0.2.0" in out
    assert f"export OVERLORD_CONFIG={quoted}" in out

    for name in NAMES:
        repo, remote = dest / "repos" / name, dest / "remotes" / f"{name}.git"
        assert config.projects[name].path == repo
        assert git(repo, "remote", "get-url", "origin") == str(remote)
        assert git(repo, "status", "--porcelain") == ""
        for branch in git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split():
            assert _counts(repo, branch) == (0, 0), (name, branch)  # release --push can work
    merged = git(dest / "repos" / "core", "branch", "--merged", "develop", "--format=%(refname)")
    assert "refs/heads/feature/old-merged" in merged.split()  # stale-branch material

    # the configured test command passes in every repo and leaves the tree clean
    argv = shlex.split(config.projects["core"].test_command)
    for name in NAMES:
        repo = dest / "repos" / name
        proc = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert git(repo, "status", "--porcelain=v1", "--untracked-files=all") == ""


def test_demo_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(tmp_path / "d"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"] == str(tmp_path / "d" / "overlord.yml")
    assert list(doc["repos"]) == NAMES
    assert doc["depends_on"]["web"] == ["core", "api"]
    assert any(cmd.endswith(" status") for cmd in doc["next"])


def test_refuses_existing_demo_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "d"
    assert main(["demo", str(dest)]) == 0
    core = dest / "repos" / "core"
    git(core, "commit", "-q", "--allow-empty", "-m", "my own work")
    paths = _tree(dest)
    before, text = snapshot(paths), (dest / "overlord.yml").read_text()
    capsys.readouterr()

    assert main(["demo", str(dest)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "already exists" in error_lines[0]
    assert "--force" in captured.err
    assert snapshot(paths) == before and (dest / "overlord.yml").read_text() == text

    assert main(["demo", str(dest), "--force"]) == 0  # rebuilt from scratch
    assert "my own work" not in git(core, "log", "--format=%s", "develop")
    assert git(core, "status", "--porcelain") == ""


def test_force_never_removes_repos_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "projects"
    mine = dest / "repos" / "mine"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("keep me\n")
    (dest / "overlord.yml").write_text("projects: {}\n")

    assert main(["demo", str(dest)]) == 2
    assert main(["demo", str(dest), "--force"]) == 2
    err = capsys.readouterr().err
    assert "not created by `overlord demo`" in err and "Traceback" not in err
    assert (mine / "precious.txt").read_text() == "keep me\n"
    assert (dest / "overlord.yml").read_text() == "projects: {}\n"


def test_works_without_any_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    empty = tmp_path / "empty.gitconfig"
    empty.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("NAME", "EMAIL"):
        for who in ("AUTHOR", "COMMITTER"):
            monkeypatch.delenv(f"GIT_{who}_{var}", raising=False)
        monkeypatch.delenv(var, raising=False)  # git falls back to $EMAIL
    assert git(tmp_path, "config", "--global", "--list", check=False) == ""

    dest = tmp_path / "d"
    assert main(["demo", str(dest)]) == 0
    config_mod.load(dest / "overlord.yml")
    authors = git(dest / "repos" / "core", "log", "--all", "--format=%an <%ae> %cn <%ce>")
    assert set(authors.splitlines()) == {
        f"{demo.DEMO_NAME} <{demo.DEMO_EMAIL}> {demo.DEMO_NAME} <{demo.DEMO_EMAIL}>"
    }
    assert empty.read_text() == "" and list(home.iterdir()) == []  # user config untouched


def test_test_command_follows_the_interpreter() -> None:
    assert demo.pick_test_command(sys.executable).endswith(" -m pytest -q -p no:cacheprovider")
    assert demo.pick_test_command("/opt/my py/python", "unittest") == (
        "'/opt/my py/python' -m unittest -q"
    )


def test_unittest_fallback_without_pytest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv = tmp_path / "venv"  # a real interpreter that has no pytest
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    assert not demo.has_pytest(python)

    ws = demo.create(tmp_path / "d", python=python)
    assert ws.test_command == f"{shlex.quote(python)} -m unittest -q"
    config = config_mod.load(ws.config_path)
    for name, repo in ws.repos.items():
        command = config.projects[name].test_command
        assert command == ws.test_command
        proc = subprocess.run(
            shlex.split(command), cwd=repo, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and "Ran 1 test" in proc.stderr, proc.stderr
        assert git(repo, "status", "--porcelain=v1", "--untracked-files=all") == ""
