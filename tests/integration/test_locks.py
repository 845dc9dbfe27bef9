"""The repository lock lives in the common git directory, never in the work tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.adapters.git.locks import PREFIX, lock_file
from overlord.core.plan import PlanState
from tests.dispatch_helpers import DB_DISTRIBUTED, cli, configure, redis_db_url, run_text
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


@pytest.mark.redis
def test_distributed_steps_wait_for_the_repository_lease(
    synced_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository lock of distributed mode is a Redis lease: held elsewhere (another
    machine sharing the workspace), a step on that repository waits for it."""
    import threading

    from overlord import defaults
    from overlord.adapters.git.locks import Lease
    from overlord.routing.broker import client
    from overlord.tasks.runtime import INPROCESS_WORKER_ENV

    ws = synced_workspace
    url = redis_db_url(DB_DISTRIBUTED)
    monkeypatch.setenv(INPROCESS_WORKER_ENV, "1")
    config = configure(ws, broker_url=url)
    core = ws.repos["core"]
    key = str(lock_file(core).parent)
    other = Lease(client(url), key, 1, defaults.LOST_WORKER_SECONDS, prefix=PREFIX)
    assert other.try_acquire("another-machine")
    done: list[object] = []
    thread = threading.Thread(
        target=lambda: done.append(run_text(config, "tag core 0.9.7", yes=True)), daemon=True
    )
    thread.start()
    thread.join(3)
    assert thread.is_alive() and git(core, "tag", "-l", "v0.9.7") == ""  # waiting
    other.release("another-machine")
    thread.join(60)
    assert done and done[0].state is PlanState.SUCCEEDED  # type: ignore[attr-defined]
    assert git(core, "tag", "-l", "v0.9.7") == "v0.9.7"
