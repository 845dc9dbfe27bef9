"""`overlord dispatch` and the plan commands at the command line (SPEC §2, §4.6)."""

from __future__ import annotations

import json

import pytest

from overlord import runner
from overlord.core import config as config_module
from overlord.core.plan import PlanState, StepState
from tests.dispatch_helpers import CliResult, cli, configure, plan_of, run_overlord
from tests.kit import Workspace, make_dirty, workspace_snapshot


def assert_bad_input(res: CliResult, *needles: str) -> None:
    """Exit 2, one `error:` line (plus at most a hint line), no traceback."""
    assert res.code == 2, res.out + res.err
    assert "Traceback" not in res.out + res.err
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), res.err
    assert len(lines) <= 2 and all(line.startswith(("error:", "hint:")) for line in lines)
    for needle in needles:
        assert needle in res.text, res.text


def plans_of(ws: Workspace) -> list[dict[str, object]]:
    return runner.store_for(config_module.load(ws.config_path)).list_plans()


def test_unknown_project_is_refused(synced_workspace: Workspace) -> None:
    before = workspace_snapshot(synced_workspace)
    res = cli(synced_workspace.config_path, "dispatch", "run tests in nosuchproject")
    assert_bad_input(res, "nosuchproject")
    assert workspace_snapshot(synced_workspace) == before
    assert plans_of(synced_workspace) == []


def test_unparseable_text_shows_the_closest_form(synced_workspace: Workspace) -> None:
    res = cli(synced_workspace.config_path, "dispatch", "merge the things please")
    # the refusal, then one line on why no model translated it (tests/integration/test_cli_translate.py)
    last = res.err.rstrip().splitlines()[-1]
    assert last.startswith("translation not available: no model endpoint is configured")
    assert_bad_input(
        CliResult(res.code, res.out, res.err.rstrip().rsplit("\n", 1)[0]), "closest form"
    )
    assert plans_of(synced_workspace) == []


def test_dirty_tree_is_refused_and_nothing_changes(synced_workspace: Workspace) -> None:
    make_dirty(synced_workspace.repos["core"])
    before = workspace_snapshot(synced_workspace)
    res = cli(synced_workspace.config_path, "dispatch", "--yes", "merge develop to main in core")
    assert_bad_input(res, "uncommitted changes")
    assert workspace_snapshot(synced_workspace) == before
    assert plans_of(synced_workspace) == []


def test_missing_branch_is_refused(synced_workspace: Workspace) -> None:
    before = workspace_snapshot(synced_workspace)
    res = cli(synced_workspace.config_path, "dispatch", "--yes", "merge nosuch to main in core")
    assert_bad_input(res, "nosuch")
    assert workspace_snapshot(synced_workspace) == before
    assert plans_of(synced_workspace) == []


def test_dry_run_changes_nothing(synced_workspace: Workspace) -> None:
    before = workspace_snapshot(synced_workspace)
    res = cli(
        synced_workspace.config_path,
        "dispatch",
        "--dry-run",
        "--yes",
        "merge develop to main in core",
    )
    assert res.code == 0, res.text
    assert "dry run: nothing changed" in res.text
    assert workspace_snapshot(synced_workspace) == before
    assert plans_of(synced_workspace) == []
    res = cli(
        synced_workspace.config_path,
        "dispatch",
        "--dry-run",
        "--json",
        "clean stale branches in core",
    )
    doc = res.json()
    assert doc["dry_run"] is True and doc["verdict"]["decision"] == "propose"
    assert workspace_snapshot(synced_workspace) == before
    assert plans_of(synced_workspace) == []


def test_no_terminal_saves_pending_with_the_approve_command(synced_workspace: Workspace) -> None:
    before = workspace_snapshot(synced_workspace)
    res = cli(synced_workspace.config_path, "dispatch", "clean stale branches in core")
    assert res.code == 3, res.text
    (row,) = plans_of(synced_workspace)
    assert row["state"] == "pending"
    assert f"overlord approve {row['id']}" in res.text
    assert workspace_snapshot(synced_workspace) == before


def test_json_prints_exactly_one_document(synced_workspace: Workspace) -> None:
    # a proposal (exit 3) ...
    res = cli(synced_workspace.config_path, "dispatch", "--json", "clean stale branches in core")
    assert res.code == 3
    doc = json.loads(res.out)  # the whole of stdout is one document
    assert doc["state"] == "pending" and doc["steps"][0]["kind"] == "clean-stale-branches"
    # ... and the plan commands
    res = cli(synced_workspace.config_path, "plans", "--json")
    assert [p["id"] for p in json.loads(res.out)["plans"]] == [doc["id"]]
    res = cli(synced_workspace.config_path, "plans", "show", doc["id"][:5], "--json")
    shown = json.loads(res.out)
    assert shown["id"] == doc["id"] and shown["events"][0]["kind"] == "created"
    assert "estimated_duration" in shown


@pytest.mark.slow
def test_json_of_an_executed_plan(synced_workspace: Workspace) -> None:
    res = cli(synced_workspace.config_path, "dispatch", "--json", "run tests in core and api")
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    assert doc["state"] == "succeeded"
    assert [s["state"] for s in doc["steps"]] == ["succeeded", "succeeded"]
    assert all(s["duration"] is not None for s in doc["steps"])


def test_plans_reject_and_cancel(synced_workspace: Workspace) -> None:
    path = synced_workspace.config_path
    assert cli(path, "dispatch", "clean stale branches in core").code == 3
    assert cli(path, "dispatch", "merge develop to main in core").code == 3
    rows = plans_of(synced_workspace)
    merge_id, clean_id = rows[0]["id"], rows[1]["id"]
    res = cli(path, "plans")
    assert res.code == 0 and str(merge_id) in res.out and str(clean_id) in res.out
    res = cli(path, "plans", "show", str(clean_id))
    assert res.code == 0 and f"plan {clean_id}: clean stale branches in core" in res.out

    res = cli(path, "reject", str(clean_id))
    assert res.code == 0, res.text
    config = config_module.load(path)
    rejected = runner.store_for(config).load(str(clean_id))
    assert rejected.state is PlanState.REJECTED
    assert [s.state for s in rejected.steps] == [StepState.SKIPPED]

    res = cli(path, "cancel", str(merge_id))
    assert res.code != 2, res.text
    assert runner.store_for(config).load(str(merge_id)).state is PlanState.CANCELLED

    res = cli(path, "plans", "--status", "rejected", "--json")
    assert [p["id"] for p in res.json()["plans"]] == [clean_id]
    # acting on a finished plan, an unknown id, an unknown state: exit 2, one line
    assert_bad_input(cli(path, "approve", str(clean_id)), "rejected")
    assert_bad_input(cli(path, "resume", str(clean_id)))
    assert_bad_input(cli(path, "reject", "zzzzzz"), "zzzzzz")
    assert_bad_input(cli(path, "plans", "--status", "bogus"), "bogus")


def test_unreachable_broker_is_one_line_and_changes_nothing(synced_workspace: Workspace) -> None:
    configure(synced_workspace, broker_url="redis://127.0.0.1:1/0")
    before = workspace_snapshot(synced_workspace)
    res = cli(synced_workspace.config_path, "dispatch", "run tests across all projects")
    assert_bad_input(res, "cannot reach the broker")
    assert plans_of(synced_workspace) == []
    assert workspace_snapshot(synced_workspace) == before


def test_unreachable_broker_on_approve(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    plan = plan_of(config, "merge develop to main in core")
    plan.state = PlanState.PENDING
    runner.store_for(config).save(plan)
    configure(synced_workspace, broker_url="redis://127.0.0.1:1/0")
    res = cli(synced_workspace.config_path, "approve", plan.id)
    assert_bad_input(res, "cannot reach the broker")
    assert runner.store_for(config).load(plan.id).state in (PlanState.PENDING, PlanState.QUEUED)


@pytest.mark.slow
def test_real_command_failure_prints_no_traceback(synced_workspace: Workspace) -> None:
    """The installed entry point, in a subprocess: a failed, rolled-back plan exits 1 and
    neither stdout nor stderr shows a traceback (Celery's worker logs included)."""
    from tests.kit import add_failing_test

    add_failing_test(synced_workspace.repos["web"])
    before = workspace_snapshot(synced_workspace)
    proc = run_overlord(
        synced_workspace.config_path, "dispatch", "--yes", "update core to 0.2.0 in api and web"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "rolled-back" in proc.stdout
    assert workspace_snapshot(synced_workspace) == before


def test_progress_lines_show_undos_in_the_order_they_ran(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from overlord.cli.progress import Progress
    from overlord.core.config import ActionKind
    from overlord.core.plan import DispatchPlan, DispatchStep

    plan = DispatchPlan(
        task="three changes",
        steps=[DispatchStep(id=f"s{i}", kind=ActionKind.TAG, project="core") for i in (1, 2, 3)],
    )
    progress = Progress(quiet=False)
    for seq, step in enumerate(plan.steps, start=1):
        step.state, step.finished_seq = StepState.SUCCEEDED, seq
    progress(plan)
    failed = DispatchStep(id="s4", kind=ActionKind.TAG, project="core", state=StepState.FAILED)
    plan.steps.append(failed)
    for step in plan.steps[:3]:
        step.state = StepState.UNDONE  # one poll sees the whole rollback at once
    progress(plan)
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert lines[3:] == [
        "s4 tag core: failed",
        "s3 tag core: undone",
        "s2 tag core: undone",
        "s1 tag core: undone",
    ]
