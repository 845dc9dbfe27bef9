"""The MINION step on the in-memory ports: plans in ``MemoryPlanStore``, the minion run by
``ScriptedMinions`` (no container, no process, no model server), slots in process. What is
left real is the repository: the step's branch, its route, its fallback, its undo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from overlord import rollback, steps, wiring
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.errors import StepFailed
from overlord.routing.check import health_cache
from overlord.routing.health import HealthRecord, utcnow
from overlord.testing.memory_store import MemoryPlanStore
from overlord.testing.minions import ScriptedMinions
from tests.kit import git, one_commit_repo

WRITE = {"name": "write_file", "arguments": {"path": "greeting.py", "content": "HI = 1\n"}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return one_commit_repo(tmp_path / "repo")


@pytest.fixture
def config(repo: Path, tmp_path: Path) -> Config:
    def model(tier: str) -> dict[str, Any]:
        return {"endpoint": "http://127.0.0.1:9/v1", "model": "m", "tier": tier, "concurrent": 1}

    config = Config.model_validate(
        {
            "state_url": f"sqlite:///{tmp_path / 'state.db'}",  # the health cache
            "projects": {"app": {"path": str(repo)}},
            "models": {"local-14b": model("local"), "cloud-fast": model("cloud-fast")},
            "minions": {"backend": "docker"},  # never asked: the scripted backend runs
        }
    )
    for name, each in [*config.projects.items(), *config.models.items()]:
        each.name = name  # as the loader names them
    cache = health_cache(config)
    for name in config.models:  # checked a moment ago: healthy
        cache.put(HealthRecord(name, True, "HTTP 200", utcnow(), 0.01))
    return config


@pytest.fixture
def store(config: Config) -> Iterator[MemoryPlanStore]:
    with wiring.replaced_store(MemoryPlanStore(str(config.state_url))) as replaced:
        assert isinstance(replaced, MemoryPlanStore)
        yield replaced


def running_minion_plan(store: MemoryPlanStore) -> DispatchPlan:
    step = DispatchStep(
        id="s1",
        kind=ActionKind.MINION,
        project="app",
        description="feature in app",
        params={
            "task_type": "feature",
            "complexity": "medium",
            "instruction": "add HI",
            "base": "main",
        },
        queue="local-14b",
        endpoint="local-14b",
        route_reason="preferred",
    )
    plan = DispatchPlan(task="add HI in app", steps=[step], state=PlanState.RUNNING)
    store.save(plan)
    return plan


def test_a_minion_step_works_on_its_branch_and_its_undo_deletes_it(
    config: Config, store: MemoryPlanStore, repo: Path
) -> None:
    minions = ScriptedMinions([{"tool_calls": [WRITE]}, {"content": "Added HI."}])
    plan = running_minion_plan(store)
    with wiring.replaced_minions(minions):
        assert steps.execute(config, plan.id, "s1", "w1") == {"step": "s1", "state": "succeeded"}
    branch = f"overlord/{plan.id}/s1"
    done = store.load_step(plan.id, "s1")
    assert done.state is StepState.SUCCEEDED and done.endpoint == "local-14b"
    assert "Added HI." in done.output and f"branch {branch}" in done.output
    assert done.undo["after"] == git(repo, "rev-parse", f"refs/heads/{branch}")
    assert minions.jobs[0]["endpoint_name"] == "local-14b" and minions.jobs[0]["base"] == "main"
    assert rollback.undo(config, plan.id, "s1")["state"] == "undone"
    assert git(repo, "branch", "--list", branch) == ""
    assert (
        git(repo, "status", "--porcelain") == "" and git(repo, "branch", "--show-current") == "main"
    )


def test_an_endpoint_failing_at_call_time_falls_back_once(
    config: Config, store: MemoryPlanStore
) -> None:
    minions = ScriptedMinions([{"status": 503}, {"tool_calls": [WRITE]}, {"content": "ok"}])
    plan = running_minion_plan(store)
    with wiring.replaced_minions(minions):
        steps.execute(config, plan.id, "s1", "w1")
    done = store.load_step(plan.id, "s1")
    assert done.state is StepState.SUCCEEDED and done.endpoint == "cloud-fast"
    assert (done.route_reason or "").startswith("fallback: local-14b failed at call time")
    assert [j["endpoint_name"] for j in minions.jobs] == ["local-14b", "cloud-fast"]


def test_a_minion_that_fails_fails_its_step(config: Config, store: MemoryPlanStore) -> None:
    minions = ScriptedMinions([{"status": 400}])  # the request's fault: no fallback
    plan = running_minion_plan(store)
    with wiring.replaced_minions(minions), pytest.raises(StepFailed):
        steps.execute(config, plan.id, "s1", "w1")
    failed = store.load_step(plan.id, "s1")
    assert failed.state is StepState.FAILED and "HTTP 400" in (failed.error or "")
    assert len(minions.jobs) == 1
