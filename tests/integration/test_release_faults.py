"""``overlord release``: a failure at every step rolls everything back; the push phase.

Each fault is real: a failing test suite committed on the branch, a git hook that rejects
a commit or a merge, a tag already on the remote, a killed process, a remote whose
pre-receive hook refuses the push. After a rollback the snapshot of every ref, HEAD and
working tree, local and remote, equals the one taken before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from overlord import runner
from overlord.cli import progress
from overlord.core.plan import DispatchPlan, PlanState, StepState
from tests.integration.test_release import cli, cli_json, load, quick_result_backend_exit  # noqa: F401
from tests.kit import (
    Workspace,
    add_failing_test,
    add_reject_hook,
    git,
    workspace_snapshot,
)

pytestmark = pytest.mark.slow

RELEASE = ("release", "core", "0.2.0", "--execute")


def _failing_tests(name: str) -> Callable[[Workspace], None]:
    def inject(ws: Workspace) -> None:
        add_failing_test(ws.repos[name])

    return inject


def _hook(name: str, hook: str) -> Callable[[Workspace], None]:
    def inject(ws: Workspace) -> None:
        add_reject_hook(ws.repos[name], hook)

    return inject


# step id -> (what fails, how it is made to fail)
FAULTS: dict[str, tuple[str, Callable[[Workspace], None]]] = {
    "s1": ("run-tests core", _failing_tests("core")),
    "s2": ("bump-version core", _hook("core", "pre-commit")),
    "s3": ("merge core", _hook("core", "pre-merge-commit")),
    "s5": ("update-dependency api", _hook("api", "pre-commit")),
    "s6": ("run-tests api", _failing_tests("api")),
    "s7": ("update-dependency web", _hook("web", "pre-commit")),
    "s8": ("run-tests web", _failing_tests("web")),
}


def _check_rolled_back(doc: dict[str, Any], failed: str) -> None:
    assert doc["state"] == "rolled-back", doc.get("error")
    states = {s["id"]: s["state"] for s in doc["steps"]}
    errors = [s["id"] for s in doc["steps"] if s["error"]]
    assert failed in errors, states
    # A suite running beside the failure is stopped when the plan fails; it says so.
    others = [s for s in doc["steps"] if s["error"] and s["id"] != failed]
    assert all(s["kind"] == "run-tests" and "stopped" in s["error"] for s in others), others
    assert states[failed] in ("failed", "undone"), states
    kinds = {s["id"]: s["kind"] for s in doc["steps"]}
    assert all(st != "succeeded" for i, st in states.items() if kinds[i] != "run-tests"), states
    assert any("rolled back" in note for note in doc["notes"])


@pytest.mark.parametrize("step_id", list(FAULTS), ids=[f"{k}-{v[0]}" for k, v in FAULTS.items()])
def test_failure_at_a_step_rolls_everything_back(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str], step_id: str
) -> None:
    ws = synced_workspace
    kind_project, inject = FAULTS[step_id]
    inject(ws)
    before = workspace_snapshot(ws)
    code, doc = cli_json(capsys, ws, *RELEASE, "--yes")
    assert code == 1
    step = next(s for s in doc["steps"] if s["id"] == step_id)
    assert f"{step['kind']} {step['project']}" == kind_project
    _check_rolled_back(doc, step_id)
    assert workspace_snapshot(ws) == before
    # the failure is remembered, with what failed
    code, found = cli_json(capsys, ws, "memory", "search", "release core", "--category", "release")
    assert code == 0
    assert any("rolled-back" in m["content"] and step_id in m["content"] for m in found["memories"])


def test_tag_already_on_the_remote_at_run_time_rolls_back(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tag appears on the remote between the proposal and its approval."""
    ws = synced_workspace
    code, doc = cli_json(capsys, ws, *RELEASE)  # no terminal, no --yes: saved pending
    assert code == 3 and doc["state"] == "pending"
    core = ws.repos["core"]
    git(core, "push", "-q", "origin", "main:refs/tags/v0.2.0")
    before = workspace_snapshot(ws)
    code, doc = cli_json(capsys, ws, "approve", doc["id"])
    assert code == 1
    step = next(s for s in doc["steps"] if s["kind"] == "tag")
    assert "already exists on remote" in step["error"]
    _check_rolled_back(doc, step["id"])
    assert workspace_snapshot(ws) == before


def _slow_tests_config(ws: Workspace, project: str) -> None:
    data = yaml.safe_load(ws.config_path.read_text())
    data["projects"][project]["test_command"] = f"{sys.executable} -c 'import time; time.sleep(60)'"
    ws.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_killed_process_mid_release_is_rolled_back_by_cancel(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL the process running the release (embedded worker included) while web's
    tests run; ``overlord cancel`` then rolls every completed step back."""
    import psutil

    ws = synced_workspace
    _slow_tests_config(ws, "web")
    before = workspace_snapshot(ws)
    proc = subprocess.Popen(
        [sys.executable, "-m", "overlord", "--config", str(ws.config_path), *RELEASE, "--yes"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(ws.root),
    )
    store = runner.store_for(load(ws))
    plan_id = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            rows = store.list_plans(None, 5)
            if rows:
                plan_id = rows[0]["id"]
                plan = store.load(plan_id)
                web_tests = [
                    s for s in plan.steps if s.project == "web" and s.kind.value == "run-tests"
                ]
                if web_tests and web_tests[0].state is StepState.RUNNING:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("web's tests never started")
        victims = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    finally:
        for pid in locals().get("victims", [proc.pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)
    assert plan_id is not None
    assert store.load(plan_id).state is PlanState.RUNNING
    code, doc = cli_json(capsys, ws, "cancel", plan_id)
    assert doc["state"] == "cancelled", doc.get("error")
    assert code == 0  # cancelled as asked: everything rolled back
    assert workspace_snapshot(ws) == before


# --- the push phase ---------------------------------------------------------------------


def _remote_refs(ws: Workspace, name: str) -> dict[str, str]:
    return dict(
        line.split(" ", 1)[::-1]
        for line in git(
            ws.remotes[name], "for-each-ref", "--format=%(objectname) %(refname)"
        ).splitlines()
    )


def _local(ws: Workspace, name: str, ref: str) -> str:
    return git(ws.repos[name], "rev-parse", ref)


def _latest(ws: Workspace) -> DispatchPlan:
    store = runner.store_for(load(ws))
    return store.load(store.list_plans(None, 1)[0]["id"])


def _answer(monkeypatch: pytest.MonkeyPatch, answer: bool) -> list[str]:
    """A person at a terminal answering every question with ``answer``."""
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return answer

    monkeypatch.setattr(progress, "interactive", lambda *a, **k: True)
    monkeypatch.setattr(progress, "ask", ask)
    return asked


def test_push_answered_yes_updates_every_remote(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = synced_workspace
    asked = _answer(monkeypatch, True)
    code, out, err = cli(capsys, ws, *RELEASE, "--push", "--yes")
    assert code == 0, out + err
    assert asked == [progress.PUSH_QUESTION]  # --yes covered the release, not the push
    core = _remote_refs(ws, "core")
    assert core["refs/heads/develop"] == _local(ws, "core", "develop")
    assert core["refs/heads/main"] == _local(ws, "core", "main")
    assert core["refs/tags/v0.2.0"] == _local(ws, "core", "refs/tags/v0.2.0")
    for name in ("api", "web"):
        assert _remote_refs(ws, name)["refs/heads/develop"] == _local(ws, name, "develop")
    assert _latest(ws).state is PlanState.SUCCEEDED


def test_push_answered_no_pushes_nothing_and_keeps_local_state(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = synced_workspace
    remotes_before = {n: _remote_refs(ws, n) for n in ws.remotes}
    _answer(monkeypatch, False)
    code, out, err = cli(capsys, ws, *RELEASE, "--push", "--yes")
    assert code == 0, out + err
    plan = _latest(ws)
    assert plan.state is PlanState.REJECTED
    assert any("nothing pushed" in note for note in plan.notes)
    assert {n: _remote_refs(ws, n) for n in ws.remotes} == remotes_before
    assert git(ws.repos["core"], "cat-file", "-t", "v0.2.0") == "tag"  # local state kept
    assert '"acme-core==0.2.0"' in git(ws.repos["web"], "show", "develop:pyproject.toml")


def test_one_remote_rejecting_the_push_is_reported_and_resume_finishes(
    synced_workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = synced_workspace
    hook = add_reject_hook(ws.remotes["web"], "pre-receive")
    web_before = _remote_refs(ws, "web")
    code, doc = cli_json(capsys, ws, *RELEASE, "--push", "--yes")
    assert code == 3 and doc["state"] == "awaiting-push"  # no terminal: waits for a person
    code, doc = cli_json(capsys, ws, "approve", doc["id"])
    assert code == 1 and doc["state"] == "failed"
    pushes = {s["project"]: s for s in doc["steps"] if s["kind"] == "push"}
    assert {p: s["state"] for p, s in pushes.items()} == {
        "core": "succeeded",
        "api": "succeeded",
        "web": "failed",
    }
    assert "rejected" in pushes["web"]["error"]
    assert "overlord resume" in doc["error"]
    assert _remote_refs(ws, "core")["refs/tags/v0.2.0"] == _local(ws, "core", "refs/tags/v0.2.0")
    assert _remote_refs(ws, "web") == web_before  # atomic: nothing of web landed
    before_cancel = workspace_snapshot(ws)
    code, _, err = cli(capsys, ws, "cancel", doc["id"])
    assert code == 2 and "already pushed core, api" in err  # local and remote stay together
    assert workspace_snapshot(ws) == before_cancel
    hook.unlink()
    code, resumed = cli_json(capsys, ws, "resume", doc["id"])
    assert code == 0 and resumed["state"] == "succeeded"
    assert _remote_refs(ws, "web")["refs/heads/develop"] == _local(ws, "web", "develop")
    again = {s["project"]: s for s in resumed["steps"] if s["kind"] == "push"}
    for name in ("core", "api"):  # only what was left was retried
        assert again[name]["ended_at"] == pushes[name]["ended_at"]
