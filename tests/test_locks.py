"""The repository lock lives in the common git directory, never in the work tree."""

from __future__ import annotations

from pathlib import Path

from overlord.locks import lock_file
from tests.dispatch_helpers import cli, configure
from tests.kit import Workspace, git


def test_linked_worktree_project_stays_clean_between_plans(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    core = ws.repos["core"]
    linked = ws.root / "core-linked"
    git(core, "worktree", "add", "-q", "-b", "linked", str(linked), "develop")
    assert (linked / ".git").is_file()
    configure(ws, projects={"core": {"path": str(linked)}}, autonomy={"global": "proactive"})

    res = cli(ws.config_path, "dispatch", "run tests in core")
    assert res.code == 0, res.text
    assert git(linked, "status", "--porcelain", "--untracked-files=all") == ""
    common = Path(git(core, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    assert lock_file(linked) == lock_file(core) == common / "overlord.lock"
    assert (common / "overlord.lock").exists()

    res = cli(ws.config_path, "dispatch", "tag core 0.9.6", "--yes")  # a write plan
    assert res.code == 0, res.text
    assert git(core, "rev-parse", "refs/tags/v0.9.6^{commit}") == git(core, "rev-parse", "main")
    assert git(linked, "symbolic-ref", "HEAD") == "refs/heads/linked"
    assert not (linked / "overlord.lock").exists()
