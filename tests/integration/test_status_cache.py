"""``overlord status``'s cache of merged-branch lists: exact after any change of commits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from overlord import defaults
from overlord.adapters.git.merged_cache import MergedCache, history_is_fixed, key
from overlord.adapters.git.scanner import as_json, scan, scan_project
from overlord.core import config as config_mod
from tests.kit import Workspace, add_commit, days_ago, git, log_git_calls


def _cached(ws: Workspace) -> list[dict[str, Any]]:
    """The rows of a scan that uses (and writes) the cache, as JSON; checked against a
    scan of each project that uses no cache."""
    cfg = config_mod.load(ws.config_path)
    rows = as_json(scan(cfg))["projects"]
    days = cfg.dispatch.stale_branch_days
    fresh = [
        as_json([scan_project(name, project, days)])["projects"][0]
        for name, project in cfg.projects.items()
    ]
    for row in rows + fresh:
        for branch in row["stale_branches"] + row["old_unmerged"]:
            branch.pop("age_days")  # a scan a second later may count another day
    assert rows == fresh
    return rows


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(row for row in rows if row["name"] == name)


def _names(row: dict[str, Any], field: str) -> list[str]:
    return [b["name"] for b in row[field]]


def test_second_scan_asks_no_merged_question(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _cached(workspace)
    cache = workspace.config_path.parent / defaults.STATUS_CACHE_FILE
    assert str(workspace.repos["core"]) in json.loads(cache.read_text())["repos"]
    log = log_git_calls(tmp_path, monkeypatch)
    cfg = config_mod.load(workspace.config_path)
    again = as_json(scan(cfg))["projects"]
    assert [c for c in log.read_text().splitlines() if "--merged" in c] == []
    assert len(log.read_text().splitlines()) == 2 * len(cfg.projects)
    assert [_names(r, "stale_branches") for r in again] == [
        _names(r, "stale_branches") for r in first
    ]


def test_merge_into_the_main_line_is_seen(workspace: Workspace) -> None:
    core = workspace.repos["core"]
    before = _row(_cached(workspace), "core")
    assert "feature/old-unmerged" in _names(before, "old_unmerged")
    git(core, "merge", "-q", "--no-ff", "--no-edit", "feature/old-unmerged")
    after = _row(_cached(workspace), "core")
    assert "feature/old-unmerged" in _names(after, "stale_branches")
    assert "feature/old-unmerged" not in _names(after, "old_unmerged")


def test_branch_moved_added_or_deleted_is_seen(workspace: Workspace) -> None:
    core = workspace.repos["core"]
    _cached(workspace)
    # moved: the merged branch gets a commit of its own (old, so it is still listed)
    git(core, "switch", "-q", "feature/old-merged")
    add_commit(core, "moved.txt", "m\n", "Moved", date=days_ago(80))
    git(core, "switch", "-q", "develop")
    row = _row(_cached(workspace), "core")
    assert "feature/old-merged" in _names(row, "old_unmerged")
    # added: a new branch at an old commit the main line contains
    old = git(core, "rev-list", "-n1", "--before=60 days ago", "develop")
    git(core, "branch", "feature/added", old)
    assert "feature/added" in _names(_row(_cached(workspace), "core"), "stale_branches")
    # deleted
    git(core, "branch", "-D", "feature/added")
    assert "feature/added" not in _names(_row(_cached(workspace), "core"), "stale_branches")


def test_main_line_reset_is_seen(workspace: Workspace) -> None:
    core = workspace.repos["core"]
    stale = _names(_row(_cached(workspace), "core"), "stale_branches")
    assert "feature/old-merged" in stale
    # develop goes back before the merge: the branch is no longer merged
    merge = git(core, "log", "--merges", "--format=%H", "-n1", "--grep=old-merged", "develop")
    git(core, "reset", "-q", "--hard", f"{merge}^1")
    row = _row(_cached(workspace), "core")
    assert "feature/old-merged" in _names(row, "old_unmerged")


def test_unreadable_cache_is_no_cache(workspace: Workspace) -> None:
    first = _cached(workspace)
    cache = workspace.config_path.parent / defaults.STATUS_CACHE_FILE
    for garbage in ("{not json", '{"version": 1, "repos": []}', '{"version": 99}', "[]"):
        cache.write_text(garbage)
        assert _cached(workspace) == first
    cache.write_text(json.dumps({"version": 1, "repos": {str(workspace.repos["core"]): 5}}))
    assert _cached(workspace) == first


def test_wrong_answer_under_another_key_is_never_used(workspace: Workspace) -> None:
    first = _cached(workspace)
    cache = workspace.config_path.parent / defaults.STATUS_CACHE_FILE
    doc = json.loads(cache.read_text())
    for entry in doc["repos"].values():
        entry["merged"] = []  # what a stale entry would say
        entry["key"] = key(["develop", "main"], [("develop", "0" * 40)])
    cache.write_text(json.dumps(doc))
    assert _cached(workspace) == first


def test_history_that_commit_ids_do_not_fix(workspace: Workspace, tmp_path: Path) -> None:
    core = workspace.repos["core"]
    assert history_is_fixed(core)
    (core / ".git" / "shallow").write_text(git(core, "rev-parse", "develop") + "\n")
    assert not history_is_fixed(core)
    (core / ".git" / "shallow").unlink()
    (core / ".git" / "info").mkdir(exist_ok=True)
    (core / ".git" / "info" / "grafts").write_text("")
    assert not history_is_fixed(core)
    (core / ".git" / "info" / "grafts").unlink()
    worktree = tmp_path / "linked"
    git(core, "worktree", "add", "-q", str(worktree), "feature/old-unmerged")
    assert history_is_fixed(worktree)
    (core / ".git" / "shallow").write_text(git(core, "rev-parse", "develop") + "\n")
    assert not history_is_fixed(worktree)  # the common directory's shallow file
    assert not history_is_fixed(tmp_path / "nowhere")


def test_replace_refs_are_never_cached(workspace: Workspace) -> None:
    core = workspace.repos["core"]
    head = git(core, "rev-parse", "develop")
    git(core, "replace", head, git(core, "rev-parse", "develop~1"))
    _cached(workspace)
    cache = workspace.config_path.parent / defaults.STATUS_CACHE_FILE
    assert str(core) not in json.loads(cache.read_text())["repos"]
    assert str(workspace.repos["api"]) in json.loads(cache.read_text())["repos"]


def test_cache_file_that_cannot_be_written_is_no_error(tmp_path: Path) -> None:
    cache = MergedCache(tmp_path / "missing-dir" / "cache.json")
    cache.put(tmp_path, "k", ["a"])
    cache.save()  # the directory does not exist: nothing written, nothing raised
    assert not (tmp_path / "missing-dir").exists()
    assert MergedCache(None).get(tmp_path, "k") is None
