"""Tests for the test kit itself (tests/kit.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit import (
    OLD_DAYS,
    Workspace,
    add_commit,
    add_failing_test,
    add_reject_hook,
    apply_env,
    build_fresh_workspace,
    build_workspace,
    git,
    isolate_git_env,
    make_dirty,
    snapshot,
    workspace_snapshot,
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("OVERLORD_CONFIG", "/nonexistent/overlord.yml")
    monkeypatch.setenv("GIT_DIR", "/nonexistent/.git")
    environ = isolate_git_env(tmp_path / "home")
    apply_env(monkeypatch, environ)
    return environ


@pytest.fixture
def ws(env: dict[str, str], tmp_path: Path) -> Workspace:
    return build_workspace(tmp_path / "ws")


def _counts(repo: Path, branch: str) -> tuple[int, int]:
    ahead, behind = git(
        repo, "rev-list", "--left-right", "--count", f"{branch}...{branch}@{{u}}"
    ).split()
    return int(ahead), int(behind)


def test_isolated_env(env: dict[str, str], tmp_path: Path) -> None:
    assert "OVERLORD_CONFIG" not in os.environ and "GIT_DIR" not in os.environ
    assert os.environ["HOME"] == str(tmp_path / "home")
    assert os.environ["GIT_CONFIG_NOSYSTEM"] == "1"
    assert git(tmp_path, "config", "--global", "user.name") == "Overlord Test"
    assert git(tmp_path, "config", "--global", "user.email") == "test@example.com"
    assert git(tmp_path, "config", "--global", "init.defaultBranch") == "main"
    assert git(tmp_path, "config", "--global", "protocol.file.allow") == "always"


@pytest.mark.parametrize("build", [build_fresh_workspace, build_workspace])
def test_build_is_fast_and_complete(
    env: dict[str, str], tmp_path: Path, build: Callable[[Path], Workspace]
) -> None:
    start = time.monotonic()
    ws = build(tmp_path / "ws")
    assert time.monotonic() - start < 5  # target < 3 s; leave slack for loaded CI
    assert set(ws.repos) == set(ws.remotes) == {"core", "api", "web", "tools"}
    assert ws.packages == {n: f"acme-{n}" for n in ws.repos}
    assert ws.expected_depends_on == {
        "core": [],
        "api": ["core"],
        "web": ["core", "api"],
        "tools": [],
    }
    for name, repo in ws.repos.items():
        assert git(repo, "status", "--porcelain") == ""
        assert git(repo, "remote", "get-url", "origin") == str(ws.remotes[name])
        assert git(ws.remotes[name], "rev-parse", "--is-bare-repository") == "true"
    for name in ("core", "api", "web"):
        repo = ws.repos[name]
        assert git(repo, "branch", "--show-current") == "develop"
        assert git(repo, "rev-parse", "--abbrev-ref", "main@{u}") == "origin/main"
        assert git(repo, "rev-parse", "--abbrev-ref", "develop@{u}") == "origin/develop"
        assert git(repo, "rev-list", "--count", "main..develop") != "0"
        assert git(repo, "cat-file", "-t", "v0.1.0") == "tag"  # annotated
        assert git(repo, "merge-base", "--is-ancestor", "v0.1.0", "main") == ""
        assert git(ws.remotes[name], "rev-parse", "v0.1.0^{commit}") == git(
            repo, "rev-parse", "main"
        )
    tools = ws.repos["tools"]
    assert git(tools, "for-each-ref", "--format=%(refname:short)", "refs/heads") == "main"
    assert git(tools, "branch", "--show-current") == "main"
    assert git(tools, "tag") == ""


def test_copies_are_independent_and_name_only_themselves(
    env: dict[str, str], tmp_path: Path
) -> None:
    first, second = build_workspace(tmp_path / "a"), build_workspace(tmp_path / "b")
    assert workspace_snapshot(first) == {
        key.replace(str(second.root), str(first.root)): value
        for key, value in workspace_snapshot(second).items()
    }
    text = subprocess.run(
        ["grep", "-rl", "--binary-files=text", "overlord-kit-templates-", str(first.root)],
        capture_output=True,
        text=True,
    )
    assert text.stdout == ""  # no path of the template left in the copy
    assert str(first.root) in first.config_path.read_text()
    add_commit(first.repos["core"], "only-a.txt", "a\n", "Only in a")
    git(first.repos["core"], "push", "-q", "origin", "develop")
    git(first.repos["core"], "tag", "only-a")
    assert "only-a" not in git(second.repos["core"], "tag")
    assert git(second.remotes["core"], "rev-parse", "develop") != git(
        first.remotes["core"], "rev-parse", "develop"
    )
    assert not (second.repos["core"] / "only-a.txt").exists()


def test_config_file(ws: Workspace) -> None:
    text = ws.config_path.read_text()
    assert text.lstrip().startswith("#")
    data = yaml.safe_load(text)
    assert data["workspace"] == str(ws.root / "repos")
    assert data["state_url"] == f"sqlite:///{ws.root}/state/overlord.db"
    assert data["autonomy"] == {"global": "proactive"}
    assert data["dispatch"] == {"max_concurrent_steps": 5, "stale_branch_days": 30}
    for name, project in data["projects"].items():
        assert project["path"] == str(ws.repos[name])
        assert project["depends_on"] == ws.expected_depends_on[name]
        assert project["package"] == ws.packages[name]
        assert project["remote"] == "origin"
    assert data["projects"]["tools"]["branch_model"] == "trunk"
    assert data["projects"]["core"]["role"] == "shared-library"


def test_packaging_metadata(ws: Workspace) -> None:
    import tomllib

    def meta(name: str) -> dict[str, Any]:
        project: dict[str, Any] = tomllib.loads((ws.repos[name] / "pyproject.toml").read_text())[
            "project"
        ]
        return project

    assert meta("core")["version"] == "0.1.0"
    assert 'version__ = "0.1.0"' in (ws.repos["core"] / "acme_core" / "__init__.py").read_text()
    assert "acme-core>=0.1.0" in meta("api")["dependencies"]
    assert meta("web")["dependencies"] == ["acme-core==0.1.0"]
    assert meta("web")["optional-dependencies"] == {"server": ["acme-api~=0.1.0"]}
    assert meta("tools")["dependencies"] == []


def test_core_test_command_passes_and_leaves_tree_clean(ws: Workspace) -> None:
    command = yaml.safe_load(ws.config_path.read_text())["projects"]["core"]["test_command"]
    repo = ws.repos["core"]
    proc = subprocess.run(shlex.split(command), cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert git(repo, "status", "--porcelain=v1", "--untracked-files=all") == ""


def test_behind_and_ahead(ws: Workspace) -> None:
    assert _counts(ws.repos["api"], "develop") == (0, 1)
    assert _counts(ws.repos["web"], "develop") == (1, 0)
    assert _counts(ws.repos["core"], "develop") == (0, 0)
    assert _counts(ws.repos["api"], "main") == (0, 0)


def test_without_behind_upstream_everything_is_in_sync(env: dict[str, str], tmp_path: Path) -> None:
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    for repo in ws.repos.values():
        for branch in git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split():
            assert _counts(repo, branch) == (0, 0), (repo, branch)


def test_stale_branch_material(ws: Workspace) -> None:
    now = time.time()
    core, api = ws.repos["core"], ws.repos["api"]

    def age_days(repo: Path, ref: str) -> float:
        return (now - int(git(repo, "log", "-1", "--format=%ct", ref))) / 86400

    assert OLD_DAYS - 1 < age_days(core, "feature/old-merged") < OLD_DAYS + 1
    assert OLD_DAYS - 1 < age_days(core, "feature/old-unmerged") < OLD_DAYS + 1
    assert age_days(core, "feature/recent-merged") < 1
    assert age_days(api, "feature/old-merged") > OLD_DAYS - 1
    merged = git(core, "branch", "--merged", "develop", "--format=%(refname:short)").split()
    assert {"feature/old-merged", "feature/recent-merged"} <= set(merged)
    assert "feature/old-unmerged" not in merged
    assert (
        "feature/old-merged" in git(api, "branch", "--merged", "develop").replace("*", "").split()
    )


def test_snapshot_equal_after_noop(ws: Workspace) -> None:
    before = workspace_snapshot(ws)
    assert set(before) == {str(p) for p in [*ws.repos.values(), *ws.remotes.values()]}
    git(ws.repos["core"], "status")
    git(ws.repos["core"], "log", "--oneline", "-3")
    git(ws.repos["api"], "fetch", "-q", "origin")
    assert workspace_snapshot(ws) == before
    core = before[str(ws.repos["core"])]
    assert core is not None and core["head"] == "refs/heads/develop" and core["status"] == ""
    remote = before[str(ws.remotes["core"])]
    assert remote is not None and remote["status"] is None and "refs/tags/v0.1.0" in remote["refs"]


def test_snapshot_detects_changes(ws: Workspace) -> None:
    core = ws.repos["core"]
    before = workspace_snapshot(ws)
    add_commit(core, "x.txt", "x\n", "A change")
    after_commit = workspace_snapshot(ws)
    assert after_commit != before
    git(core, "tag", "-a", "v9.9.9", "-m", "tag")
    after_tag = snapshot([core])
    assert after_tag[str(core)] != after_commit[str(core)]
    make_dirty(core)
    assert snapshot([core]) != after_tag
    git(core, "stash", "-q")
    stashed = snapshot([core])[str(core)]
    assert stashed is not None and "refs/stash" in stashed["refs"] and stashed["status"] == ""
    git(core, "switch", "-q", "--detach", "main")
    detached = snapshot([core])[str(core)]
    assert detached is not None and detached["head"] == git(core, "rev-parse", "main")
    assert snapshot([ws.root / "missing"]) == {str(ws.root / "missing"): None}


def test_fault_helpers(ws: Workspace) -> None:
    core = ws.repos["core"]
    add_failing_test(core)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=core,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "1 failed" in proc.stdout
    add_reject_hook(core, "pre-commit")
    (core / "y.txt").write_text("y\n")
    git(core, "add", "y.txt")
    assert subprocess.run(["git", "-C", str(core), "commit", "-q", "-m", "y"]).returncode != 0
    add_reject_hook(ws.remotes["api"], "pre-receive")
    api = ws.repos["api"]
    git(api, "reset", "-q", "--hard", "origin/develop")
    add_commit(api, "z.txt", "z\n", "z")
    push = subprocess.run(["git", "-C", str(api), "push", "-q"], capture_output=True, text=True)
    assert push.returncode != 0 and "rejected by test pre-receive hook" in push.stderr
