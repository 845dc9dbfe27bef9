"""A push sends exactly the commits and tag objects the plan made and tested (SPEC §3, push
row): a branch that moved while the plan waited for its push answer is refused, nothing
leaves, and the plan keeps waiting; put back, the same plan pushes the tested objects."""

from __future__ import annotations

from overlord import runner
from overlord.core import config as config_module
from overlord.core.plan import PlanState
from tests.dispatch_helpers import cli
from tests.kit import Workspace, add_commit, git, snapshot


def test_a_commit_on_main_while_awaiting_push_is_not_pushed(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    core = ws.repos["core"]
    res = cli(ws.config_path, "release", "core", "0.2.0", "--execute", "--push", "--yes", "--json")
    assert res.code == 3 and res.json()["state"] == "awaiting-push", res.out + res.err
    plan_id = res.json()["id"]
    tested_main = git(core, "rev-parse", "refs/heads/main")
    tested_tag = git(core, "rev-parse", "refs/tags/v0.2.0")  # the tag object
    original = git(core, "rev-parse", "--abbrev-ref", "HEAD")
    git(core, "checkout", "-q", "main")
    late = add_commit(core, "late.txt", "not tested\n", "A commit after the tests")
    git(core, "checkout", "-q", original)
    remotes = snapshot(ws.remotes.values())

    refused = cli(ws.config_path, "approve", plan_id)
    assert refused.code == 2, refused.text
    assert f"main (tested {tested_main[:10]}, now {late[:10]})" in refused.text
    assert "nothing was pushed" in refused.text and f"overlord approve {plan_id}" in refused.text
    assert snapshot(ws.remotes.values()) == remotes
    store = runner.store_for(config_module.load(ws.config_path))
    plan = store.load(plan_id)
    assert plan.state is PlanState.AWAITING_PUSH and not plan.push_approved

    git(core, "branch", "-f", "main", tested_main)  # the new commit stays on another branch
    done = cli(ws.config_path, "approve", plan_id, "--json")
    assert done.code == 0 and done.json()["state"] == "succeeded", done.text
    remote = ws.remotes["core"]
    assert git(remote, "rev-parse", "refs/heads/main") == tested_main
    assert git(remote, "rev-parse", "refs/tags/v0.2.0") == tested_tag
    assert git(remote, "cat-file", "-t", "refs/tags/v0.2.0") == "tag"
    assert git(remote, "cat-file", "-t", late, check=False) != "commit"  # never left


def test_the_push_step_itself_refuses_a_moved_branch(synced_workspace: Workspace) -> None:
    """Approved by other means than `overlord approve` (a forged approval would need the
    database): the worker's push step checks again and pushes nothing."""
    from overlord import lifecycle, steps
    from overlord.core.config import ActionKind

    ws = synced_workspace
    core = ws.repos["core"]
    res = cli(ws.config_path, "release", "core", "0.2.0", "--execute", "--push", "--yes", "--json")
    assert res.code == 3, res.text
    config = config_module.load(ws.config_path)
    store = runner.store_for(config)
    plan = store.load(res.json()["id"])
    develop_tested = git(core, "rev-parse", "refs/heads/develop")
    git(core, "checkout", "-q", "develop")
    add_commit(core, "late.txt", "not tested\n", "A commit after the tests")
    remotes = snapshot(ws.remotes.values())
    assert lifecycle.move(store, plan.id, lifecycle.Move.APPROVE_PUSH, push_approved=True)
    push = next(s for s in plan.steps if s.kind is ActionKind.PUSH and s.project == "core")
    out = steps.execute(config, plan.id, push.id, "test-worker")
    assert out["state"] == "failed"
    assert f"develop (tested {develop_tested[:10]}" in out["error"]
    assert snapshot(ws.remotes.values()) == remotes
