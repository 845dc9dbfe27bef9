"""A rollback never destroys a person's work, and text is never read as markup."""

from __future__ import annotations

import json
import threading

import pytest

from overlord import rollback, steps
from overlord.adapters.sql.store import Store
from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import ActionKind
from overlord.core.plan import PlanState, StepState
from overlord.core.planner import PlanBuilder
from tests.kit import Workspace, add_commit, git, workspace_snapshot


def run(capsys: pytest.CaptureFixture[str], ws: Workspace, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--config", str(ws.config_path), *args])
    out, err = capsys.readouterr()
    return code, out, err


def pending_release(capsys: pytest.CaptureFixture[str], ws: Workspace) -> str:
    """A release run to its push question (no terminal: it waits); returns the plan id."""
    code, out, err = run(capsys, ws, "release", "core", "0.2.0", "--execute", "--push", "--yes")
    assert code == 3, out + err
    _, listing, _ = run(capsys, ws, "plans", "--json")
    return str(json.loads(listing)["plans"][0]["id"])


def test_cancel_keeps_a_commit_made_after_the_plan(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = synced_workspace
    plan_id = pending_release(capsys, ws)
    core = ws.repos["core"]
    mine = add_commit(core, "MINE.md", "a person's work\n", "a person's commit")
    code, out, err = run(capsys, ws, "cancel", plan_id)
    assert code == 1, out + err
    assert "rollback incomplete" in out and "develop moved since this plan changed it" in out
    assert git(core, "rev-parse", "develop") == mine  # the person's commit is still there
    assert git(core, "status", "--porcelain") == ""


def test_cancel_never_resets_uncommitted_changes(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = synced_workspace
    plan_id = pending_release(capsys, ws)
    core = ws.repos["core"]
    readme = core / "README.md"
    readme.write_text(readme.read_text() + "unsaved edit\n")
    code, out, err = run(capsys, ws, "cancel", plan_id)
    assert code == 1, out + err
    assert "uncommitted changes on develop" in out
    assert "unsaved edit" in readme.read_text()


def test_cancel_of_a_rejected_release_rolls_it_back(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = synced_workspace
    before = workspace_snapshot(ws)
    plan_id = pending_release(capsys, ws)
    code, out, _ = run(capsys, ws, "reject", plan_id)
    assert code == 0 and "rejected" in out
    assert workspace_snapshot(ws) != before  # the local release is kept after a rejected push
    code, out, err = run(capsys, ws, "cancel", plan_id)
    assert code == 0, out + err
    assert workspace_snapshot(ws) == before


def test_brackets_in_input_and_output_are_shown_not_parsed(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, workspace, "release", "[/x]", "1.0.0")
    assert code == 2 and "[/x]" in err and "Traceback" not in err
    core = workspace.repos["core"]
    add_commit(
        core,
        "tests/test_loud.py",
        # the last line the run prints (the step's error) holds [brackets]
        "import atexit\n\natexit.register(print, 'see [/tmp/log]')\n\n\n"
        "def test_loud():\n    raise AssertionError('see [/tmp/log]')\n",
        "a test that fails loudly",
    )
    before = workspace_snapshot(workspace)
    code, out, err = run(
        capsys, workspace, "dispatch", "update core to 0.2.0 in api and core", "--yes"
    )
    assert code == 2  # core cannot depend on itself: refused before anything runs
    code, out, err = run(capsys, workspace, "dispatch", "run tests in core")
    assert code == 1 and "Traceback" not in out + err
    assert "[/tmp/log]" in out
    assert workspace_snapshot(workspace) == before


def test_existing_tag_and_bad_tier_are_refused_before_anything_runs(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    before = workspace_snapshot(workspace)
    code, _, err = run(capsys, workspace, "dispatch", "tag api 0.1.0", "--yes")
    assert code == 2 and "tag v0.1.0 already exists" in err
    code, _, err = run(capsys, workspace, "dispatch", "run tests in api", "--tier", "bogus")
    assert code == 2 and "unknown model tier 'bogus'" in err
    assert workspace_snapshot(workspace) == before


def test_a_failed_step_stays_failed_after_the_rollback(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.kit import add_failing_test

    add_failing_test(workspace.repos["web"])
    code, out, _ = run(
        capsys, workspace, "dispatch", "update core to 0.2.0 in api and web", "--yes", "--json"
    )
    doc = json.loads(out)
    assert code == 1 and doc["state"] == "rolled-back"
    states = {(s["kind"], s["project"]): s["state"] for s in doc["steps"]}
    assert states[("run-tests", "web")] == "failed"  # not "undone": it never succeeded
    assert states[("update-dependency", "web")] == "undone"
    code, out, _ = run(capsys, workspace, "report", "--json")
    report = json.loads(out)
    kinds = {row["kind"]: row for row in report["by_kind"]}
    assert kinds["run-tests"]["failed"] >= 1


def test_two_rollbacks_at_once_undo_a_step_once(synced_workspace: Workspace) -> None:
    """A resume while a rollback runs starts a second one: each step is undone once."""
    ws = synced_workspace
    config = config_module.load(ws.config_path)
    assert config.state_url
    before = workspace_snapshot(ws)
    builder = PlanBuilder(config, "merge develop to main in core")
    builder.add(
        ActionKind.MERGE, "core", "merge", source="develop", target="main", branches=["develop"]
    )
    plan = builder.build()
    store = Store(config.state_url)
    store.save(plan)
    store.transition(plan.id, PlanState.RUNNING, expect=[plan.state])
    assert steps.execute(config, plan.id, "s1", "w")["state"] == "succeeded"
    assert workspace_snapshot(ws) != before

    results: list[dict[str, object]] = []
    threads = [
        threading.Thread(target=lambda: results.append(rollback.undo(config, plan.id, "s1")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["state"] for r in results) == ["undone", "undone"]
    kinds = [e["kind"] for e in store.events(plan.id) if e["step_id"] == "s1"]
    assert kinds.count("undo") == 1 and "undo-failed" not in kinds
    assert store.load(plan.id).step("s1").state is StepState.UNDONE
    assert workspace_snapshot(ws) == before
