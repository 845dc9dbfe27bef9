"""Expected durations remembered per (project, step kind), and shown (SPEC §3, §2)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from overlord import defaults, durations
from overlord.core import approval
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, StepState, now
from tests.dispatch_helpers import cli
from tests.kit import Workspace


def ran(
    sid: str, project: str | None, kind: ActionKind, seconds: float, **kw: object
) -> DispatchStep:
    end = now()
    return DispatchStep(
        id=sid,
        kind=kind,
        project=project,
        state=kw.pop("state", StepState.SUCCEEDED),  # type: ignore[arg-type]
        started_at=end - timedelta(seconds=seconds),
        ended_at=end,
        **kw,  # type: ignore[arg-type]
    )


def test_learn_keeps_a_weighted_mean_per_project_and_kind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    tests = ActionKind.RUN_TESTS
    first = DispatchPlan(
        task="t",
        steps=[
            ran("s1", "core", tests, 4.0),
            ran("s2", "api", tests, 1.0),
            ran("s3", "web", tests, 9.0, state=StepState.FAILED, error="boom"),  # not learned
            ran("s4", "core", ActionKind.PUSH, 30.0),  # not learned: the network's time
        ],
    )
    durations.learn(url, first)
    keys = {("core", "run-tests"), ("api", "run-tests"), ("web", "run-tests"), ("core", "push")}
    assert durations.remembered(url, keys) == {
        ("core", "run-tests"): pytest.approx(4.0, abs=0.01),
        ("api", "run-tests"): pytest.approx(1.0, abs=0.01),
    }
    durations.learn(url, DispatchPlan(task="t", steps=[ran("s1", "core", tests, 2.0)]))
    mean = durations.remembered(url, {("core", "run-tests")})[("core", "run-tests")]
    assert mean == pytest.approx(
        defaults.DURATION_WEIGHT * 2.0 + (1 - defaults.DURATION_WEIGHT) * 4.0, abs=0.01
    )


def test_expect_uses_what_is_remembered_else_the_default(tmp_path: Path, workspace) -> None:  # type: ignore[no-untyped-def]
    from overlord.core import config as config_module

    config = config_module.load(workspace.config_path)
    assert config.state_url
    durations.learn(
        config.state_url,
        DispatchPlan(task="t", steps=[ran("s1", "core", ActionKind.RUN_TESTS, 3.0)]),
    )
    plan = DispatchPlan(
        task="t",
        steps=[
            DispatchStep(id="s1", kind=ActionKind.RUN_TESTS, project="core", estimate=10),
            DispatchStep(id="s2", kind=ActionKind.RUN_TESTS, project="api", estimate=10),
        ],
    )
    durations.expect(config, plan)
    assert plan.step("s1").estimate == pytest.approx(3.0, abs=0.01)
    assert plan.step("s1").estimate_source == "remembered"
    assert plan.step("s2").estimate == 10 and plan.step("s2").estimate_source == "default"
    assert plan.options["max_concurrent_steps"] == config.dispatch.max_concurrent_steps


def test_durations_are_read_once_per_dispatch(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare`` reads the remembered durations; ``submit`` after it does not read them
    again, and ``submit`` without ``prepare`` still does."""
    from overlord import dispatching
    from overlord.core import config as config_module

    config = config_module.load(workspace.config_path)
    assert config.state_url
    durations.learn(
        config.state_url,
        DispatchPlan(task="t", steps=[ran("s1", "core", ActionKind.RUN_TESTS, 3.0)]),
    )
    reads: list[object] = []
    read = durations.remembered
    monkeypatch.setattr(durations, "remembered", lambda *a: reads.append(a) or read(*a))

    def plan() -> DispatchPlan:
        return DispatchPlan(
            task="t", steps=[DispatchStep(id="s1", kind=ActionKind.RUN_TESTS, project="core")]
        )

    prepared = plan()
    dispatching.submit(config, prepared, dispatching.prepare(config, prepared))
    assert len(reads) == 1
    assert prepared.step("s1").estimate == pytest.approx(3.0, abs=0.01)
    unprepared = plan()
    dispatching.submit(config, unprepared, approval.decide(config, unprepared))
    assert len(reads) == 2 and unprepared.step("s1").estimate_source == "remembered"


def test_dry_run_and_plans_show_give_expected_durations(synced_workspace: Workspace) -> None:
    path = synced_workspace.config_path
    res = cli(path, "dispatch", "--dry-run", "--json", "run tests in core and api")
    assert res.code == 0, res.text
    doc = json.loads(res.out)
    assert [s["expected_source"] for s in doc["steps"]] == ["default", "default"]
    assert all(s["expected"] > 0 for s in doc["steps"])
    assert doc["expected_wall"] == pytest.approx(max(s["expected"] for s in doc["steps"]))
    text = cli(path, "dispatch", "--dry-run", "run tests in core and api").text
    assert "expected wall time" in text and "the kind's default" in text

    from overlord.core import config as config_module

    config = config_module.load(path)
    assert config.state_url
    durations.learn(
        config.state_url,
        DispatchPlan(task="t", steps=[ran("s1", "core", ActionKind.RUN_TESTS, 2.5)]),
    )
    res = cli(path, "dispatch", "--json", "clean stale branches in core and api")
    assert res.code == 3  # saved as pending: plans show reads it back
    plan_id = json.loads(res.out)["id"]
    shown = json.loads(cli(path, "plans", "show", plan_id, "--json").out)
    assert {s["expected_source"] for s in shown["steps"]} == {"default"}
    assert "expected_wall" in shown
    res = cli(path, "dispatch", "--dry-run", "--json", "run tests in core and api")
    steps = {s["project"]: s for s in json.loads(res.out)["steps"]}
    assert steps["core"]["expected_source"] == "remembered"
    assert steps["core"]["expected"] == pytest.approx(2.5, abs=0.05)
    assert steps["api"]["expected_source"] == "default"
    text = cli(path, "plans", "show", plan_id).text
    assert "expected wall time" in text and "expect" in text
