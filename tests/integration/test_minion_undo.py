"""Undoing a minion step never destroys a person's work (issue 12, safe undo).

The step records the tip it left its branch at; undo deletes the branch only while it
still holds that tip and no worktree holding it is a person's or dirty. Otherwise the undo
is refused with the reason recorded (the plan says the rollback is incomplete) and
everything stays. Real repos, a real scripted model server, the process backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from overlord import rollback
from overlord.adapters.sql.store import Store
from overlord.core.config import Config
from overlord.errors import GitError
from overlord.kinds.base import Context
from overlord.minion_step import ACTION
from tests.integration.test_minion_steps import (
    TASK,
    WRITE_AND_FINISH,
    configure,
    dispatch,
    endpoint,
    only_plan,
)
from tests.kit import Workspace, git
from tests.openai_server import ScriptedOpenAI


def _minion_branch(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> tuple[Config, Any]:
    with ScriptedOpenAI(WRITE_AND_FINISH) as local:
        config = configure(workspace, {"local-14b": endpoint(local, "local")})
        code, doc = dispatch(workspace, capsys, TASK)
    assert code == 0, doc
    plan = only_plan(config)
    (step,) = plan.steps
    assert step.undo["after"] == git(
        workspace.root / "repos" / "core", "rev-parse", step.undo["branch"]
    )
    return config, plan


def _events(config: Config, plan_id: str) -> list[dict[str, Any]]:
    assert config.state_url
    return [e for e in Store(config.state_url).events(plan_id) if e["kind"].startswith("undo")]


def test_undo_keeps_a_person_s_commit_and_uncommitted_files(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The reproduction: a person checks the minion's branch out in a worktree, commits on
    it and leaves edits; the undo (what `cancel` runs) used to force-remove both."""
    config, plan = _minion_branch(workspace, capsys)
    (step,) = plan.steps
    core, branch = workspace.root / "repos" / "core", step.undo["branch"]
    tree = tmp_path / "mine"
    git(core, "worktree", "add", "-q", str(tree), branch)
    (tree / "greeting.py").write_text("def greet(name):\n    return 'hi ' + name\n")
    git(tree, "commit", "-qam", "my own fix")
    mine = git(tree, "rev-parse", "HEAD")
    (tree / "notes.txt").write_text("not committed yet\n")

    result = rollback.undo(config, plan.id, step.id)

    assert result["state"] == "undo-failed"
    assert "moved since the minion left it" in result["error"] and "keeping" in result["error"]
    assert git(core, "rev-parse", branch) == mine
    assert (tree / "notes.txt").read_text() == "not committed yet\n"
    assert "return 'hi '" in (tree / "greeting.py").read_text()
    assert str(tree) in git(core, "worktree", "list")
    assert "moved since" in _events(config, plan.id)[-1]["message"]


def test_undo_keeps_a_branch_a_person_has_checked_out(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, plan = _minion_branch(workspace, capsys)
    (step,) = plan.steps
    core, branch = workspace.root / "repos" / "core", step.undo["branch"]
    tree = tmp_path / "looking"
    git(core, "worktree", "add", "-q", str(tree), branch)  # clean, at the minion's tip
    result = rollback.undo(config, plan.id, step.id)
    assert result["state"] == "undo-failed" and "checked out in" in result["error"]
    assert git(core, "rev-parse", branch) == step.undo["after"]
    assert (tree / "greeting.py").exists()
    # once the person is done with it, the undo goes through
    git(core, "worktree", "remove", str(tree))
    assert rollback.undo(config, plan.id, step.id)["state"] == "undone"
    assert git(core, "branch", "--list", branch) == ""


def test_undo_removes_a_clean_left_over_minion_worktree_but_not_a_dirty_one(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    config, plan = _minion_branch(workspace, capsys)
    (step,) = plan.steps
    core, branch = workspace.root / "repos" / "core", step.undo["branch"]
    left = core / ".git" / "overlord-worktrees" / "left-over"  # as a killed worker leaves it
    git(core, "worktree", "add", "-q", str(left), branch)
    (left / "half-done.py").write_text("x = 1\n")
    result = rollback.undo(config, plan.id, step.id)
    assert result["state"] == "undo-failed" and "uncommitted changes" in result["error"]
    assert (left / "half-done.py").exists() and git(core, "rev-parse", branch) == step.undo["after"]
    (left / "half-done.py").unlink()
    assert rollback.undo(config, plan.id, step.id)["state"] == "undone"
    assert not left.exists() and git(core, "branch", "--list", branch) == ""


def test_undo_without_a_recorded_tip_deletes_only_the_minion_s_own_commit(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker killed before the step finished recorded no tip: one minion commit on the
    base is the step's; anything else is a person's and stays."""
    config, plan = _minion_branch(workspace, capsys)
    (step,) = plan.steps
    core, branch = workspace.root / "repos" / "core", step.undo["branch"]
    without_tip = {k: v for k, v in step.undo.items() if k != "after"}
    ctx = Context(config, plan.id, step)
    git(core, "checkout", "-q", branch)
    (core / "extra.txt").write_text("mine\n")
    git(core, "add", "extra.txt")
    git(core, "commit", "-qm", "person's commit")
    git(core, "checkout", "-q", "-")
    with pytest.raises(GitError, match="moved since"):
        ACTION.undo(ctx, without_tip)
    git(core, "branch", "-f", branch, f"{branch}~1")
    assert ACTION.undo(ctx, without_tip).startswith("deleted branch")
