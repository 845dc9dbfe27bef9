"""The status scanner against the realistic workspace of tests/kit.py and small repos."""

from __future__ import annotations

import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from overlord.adapters.git.git import Git
from overlord.adapters.git.scanner import (
    ProjectStatus,
    as_json,
    classify_branches,
    scan,
    stale_branches,
)
from overlord.core import config as config_mod
from overlord.core.config import Config
from overlord.errors import ProjectLookupError
from tests.kit import Workspace, add_commit, days_ago, git, log_git_calls, make_dirty


def _rows(ws: Workspace, **kwargs: object) -> dict[str, ProjectStatus]:
    cfg = config_mod.load(ws.config_path)
    return {row.name: row for row in scan(cfg, **kwargs)}  # type: ignore[arg-type]


def _with_projects(ws: Workspace, extra: dict[str, Path]) -> Config:
    data = yaml.safe_load(ws.config_path.read_text())
    for name, path in extra.items():
        data["projects"][name] = {"path": str(path)}
    path = ws.root / "extra.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_mod.load(path)


def test_workspace_rows(workspace: Workspace) -> None:
    rows = _rows(workspace)
    assert list(rows) == ["core", "api", "web", "tools"]
    core = rows["core"]
    assert core.ok and core.error is None
    assert core.branch == "develop" and not core.detached
    assert not core.dirty
    assert core.upstream == "origin/develop"
    assert [b.name for b in core.stale_branches] == ["feature/old-merged"]
    assert [b.name for b in core.old_unmerged] == ["feature/old-unmerged"]
    assert core.stale_branches[0].age_days >= 89
    assert core.stale_branches[0].sha == git(
        workspace.repos["core"], "rev-parse", "feature/old-merged"
    )
    assert [t.name for t in core.tags] == ["v0.1.0"]
    assert core.last_commit is not None
    assert core.last_commit.sha == git(workspace.repos["core"], "rev-parse", "HEAD")
    assert core.last_commit.subject.startswith("Merge branch 'feature/recent-merged'")
    assert (rows["api"].ahead, rows["api"].behind) == (0, 1)
    assert (rows["web"].ahead, rows["web"].behind) == (1, 0)
    assert rows["tools"].branch == "main" and rows["tools"].tags == []
    assert [b.name for b in rows["api"].stale_branches] == ["feature/old-merged"]


def test_json_document_is_plain_data(workspace: Workspace) -> None:
    doc = as_json(scan(config_mod.load(workspace.config_path)))
    core = doc["projects"][0]
    assert core["name"] == "core"
    assert set(core["stale_branches"][0]) == {"name", "sha", "last_commit", "age_days"}
    assert isinstance(core["stale_branches"][0]["last_commit"], str)
    assert set(core["last_commit"]) == {"sha", "date", "subject"}


def test_names_select_in_config_order(workspace: Workspace) -> None:
    cfg = config_mod.load(workspace.config_path)
    assert [r.name for r in scan(cfg, ["web", "core"])] == ["core", "web"]
    assert scan(cfg, []) == []
    with pytest.raises(ProjectLookupError):
        scan(cfg, ["nope"])


def test_dirty_counts_and_detached(workspace: Workspace) -> None:
    core, web = workspace.repos["core"], workspace.repos["web"]
    make_dirty(core)
    (core / "new.txt").write_text("n\n")
    (core / "staged.txt").write_text("s\n")
    git(core, "add", "staged.txt")
    git(web, "checkout", "-q", "--detach", "HEAD~1")
    rows = _rows(workspace)
    assert rows["core"].dirty
    assert (rows["core"].staged, rows["core"].modified, rows["core"].untracked) == (1, 1, 1)
    assert rows["web"].detached and rows["web"].branch is None and rows["web"].upstream is None
    assert rows["web"].last_commit is not None
    assert rows["web"].last_commit.sha == git(web, "rev-parse", "HEAD")


def test_fetch_updates_behind(workspace: Workspace, tmp_path: Path) -> None:
    clone = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", "-b", "develop", str(workspace.remotes["core"]), str(clone))
    add_commit(clone, "T.md", "t\n", "Teammate")
    git(clone, "push", "-q", "origin", "develop")
    assert _rows(workspace, names=["core"])["core"].behind == 0  # no network without --fetch
    row = _rows(workspace, names=["core"], fetch=True)["core"]
    assert row.behind == 1 and row.warnings == []


def test_fetch_failure_is_a_warning(workspace: Workspace) -> None:
    shutil.rmtree(workspace.remotes["tools"])
    row = _rows(workspace, names=["tools"], fetch=True)["tools"]
    assert row.ok
    assert row.warnings and "fetch failed" in row.warnings[0]


def test_broken_rows_never_raise(workspace: Workspace, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(workspace.repos["tools"], broken)
    (broken / ".git" / "HEAD").write_text("garbage\n")
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", "-b", "main", str(empty))
    unreadable = tmp_path / "unreadable"
    shutil.copytree(workspace.repos["tools"], unreadable)
    objects = unreadable / ".git" / "objects"
    for pack in objects.rglob("*"):
        if pack.is_file():
            pack.chmod(stat.S_IWUSR)
            pack.write_bytes(b"corrupt")
    cfg = _with_projects(
        workspace,
        {
            "gone": tmp_path / "missing",
            "plain": plain,
            "broken": broken,
            "empty": empty,
            "corrupt": unreadable,
        },
    )
    rows = {r.name: r for r in scan(cfg)}
    assert list(rows)[-5:] == ["gone", "plain", "broken", "empty", "corrupt"]
    assert not rows["gone"].ok and "no such directory" in (rows["gone"].error or "")
    assert not rows["plain"].ok and "not a git repository" in (rows["plain"].error or "")
    assert not rows["broken"].ok and rows["broken"].error
    assert not rows["corrupt"].ok and rows["corrupt"].error
    assert rows["empty"].ok and rows["empty"].last_commit is None and rows["empty"].branch == "main"
    assert rows["core"].ok


def test_stale_branches_helper(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    add_commit(repo, "a", "a\n", "A", date=days_ago(100))
    for name in ("feature/a", "develop", "master", "current"):
        git(repo, "branch", name)
    git(repo, "switch", "-q", "current")
    g = Git(repo)
    assert [b.name for b in stale_branches(g, ["main"], 30)] == ["feature/a"]
    assert stale_branches(g, ["main"], 200) == []
    assert [b.name for b in stale_branches(g, ["main"], 30, current="main")] == [
        "current",
        "feature/a",
    ]
    later = datetime.now(UTC) - timedelta(days=80)
    assert stale_branches(g, ["main"], 30, now=later) == []
    assert [b.name for b in stale_branches(g, ["nothing-here", "main"], 30)] == ["feature/a"]


def test_classify_skips_protected_and_current() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    old = now - timedelta(days=60)
    tips = {n: (n * 2, old) for n in ("main", "develop", "master", "x", "y", "cur")}
    tips["new"] = ("nn", now - timedelta(days=1))
    stale, unmerged = classify_branches(
        tips, ["x", "main", "new", "cur"], current="cur", main_branches=["main"], days=30, now=now
    )
    assert [b.name for b in stale] == ["x"]
    assert [b.name for b in unmerged] == ["y"]
    assert stale[0].age_days == 60


def test_few_git_calls_per_repo(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = log_git_calls(tmp_path, monkeypatch)
    scan(config_mod.load(workspace.config_path))
    calls = log.read_text().splitlines()
    for name, path in workspace.repos.items():
        mine = [c for c in calls if c.startswith(f"-C {path} ")]
        assert 1 <= len(mine) <= 4, (name, mine)
