"""`overlord report`: success rates and durations per action kind and per endpoint,
failures by reason, over a period, from the state database of real runs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from overlord import report
from overlord.adapters.sql.store import Store
from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.errors import OverlordError
from tests.kit import Workspace, add_failing_test

MODELS = (
    "\nmodels:\n  local-14b: {endpoint: 'http://127.0.0.1:9/v1', model: qwen2.5-coder-14b, "
    "tier: local, concurrent: 2}\n"
)


@pytest.mark.parametrize(
    "text, seconds",
    [("7d", 7 * 86400), ("24h", 86400), ("30m", 1800), ("90s", 90), ("2w", 14 * 86400)],
)
def test_since_durations(text: str, seconds: int) -> None:
    assert report.parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d7", "0d", "7 days", "-1h"])
def test_bad_since_is_refused(text: str) -> None:
    with pytest.raises(OverlordError, match="not a duration"):
        report.parse_since(text)


def test_reason_drops_incidental_parts() -> None:
    a = report.reason_of("step s3 (merge) failed: cannot merge 1a2b3c4d5e into /tmp/x/repo")
    b = report.reason_of("step s9 (merge) failed: cannot merge 99ffee00aa into /home/y/repo")
    assert a == b == "cannot merge <sha> into <path>"
    assert report.reason_of(None) == "unknown"


def _model_plan(store: Store) -> str:
    """A plan with two code steps on the local-14b queue, run through the store as a
    worker would: claim, record the endpoint, finish (one succeeds, one fails)."""
    plan = DispatchPlan(
        task="fix lint in core",
        state=PlanState.RUNNING,
        steps=[
            DispatchStep(id="s1", kind=ActionKind.MINION, project="core", queue="local-14b"),
            DispatchStep(id="s2", kind=ActionKind.MINION, project="api", queue="local-14b"),
        ],
    )
    store.save(plan)
    for step_id, state in (("s1", StepState.SUCCEEDED), ("s2", StepState.FAILED)):
        store.claim(plan.id, step_id, "local-14b@host")
        store.set_route(plan.id, step_id, "local-14b", "preferred")
        error = "minion exited 3: model timed out" if state is StepState.FAILED else None
        store.finish(plan.id, step_id, state, error=error)
    return plan.id


def test_report_of_real_runs(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    workspace.config_path.write_text(workspace.config_path.read_text() + MODELS)
    path = str(workspace.config_path)
    assert main(["--config", path, "dispatch", "run tests across all projects", "--json"]) == 0
    add_failing_test(workspace.repos["api"])
    assert main(["--config", path, "dispatch", "run tests in api", "--json"]) == 1
    capsys.readouterr()
    config = config_module.load(path)
    assert config.state_url
    _model_plan(Store(config.state_url))

    doc = report.summary(config, timedelta(days=7))
    kinds = {row["kind"]: row for row in doc["by_kind"]}
    tests = kinds["run-tests"]
    assert (tests["runs"], tests["succeeded"], tests["failed"]) == (5, 4, 1)
    assert tests["success_rate"] == 0.8
    assert tests["median_s"] is not None and tests["median_s"] > 0
    assert kinds["minion"]["success_rate"] == 0.5
    endpoints = {row["endpoint"]: row for row in doc["by_endpoint"]}
    assert endpoints["direct"]["runs"] == 5 and endpoints["direct"]["model"] is None
    assert endpoints["local-14b"]["model"] == "qwen2.5-coder-14b"
    assert endpoints["local-14b"]["queue"] == "local-14b"
    reasons = {(f["kind"], f["reason"]): f for f in doc["failures"]}
    assert ("minion", "minion exited 3: model timed out") in reasons
    test_failure = [f for f in doc["failures"] if f["kind"] == "run-tests"]
    assert len(test_failure) == 1 and test_failure[0]["projects"] == ["api"]
    assert doc["plans"]["succeeded"] == 1

    # the CLI: one JSON document; a table; Prometheus text; an empty period
    assert main(["--config", path, "report", "--since", "7d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_kind"] == doc["by_kind"]
    assert main(["--config", path, "report"]) == 0
    out = capsys.readouterr().out
    assert "per action kind" in out and "run-tests" in out and "qwen2.5-coder-14b" in out
    assert "failures by reason" in out
    assert main(["--config", path, "report", "--prometheus"]) == 0
    prom = capsys.readouterr().out
    assert 'overlord_steps_total{kind="run-tests",outcome="failed"} 1' in prom
    assert main(["--config", path, "report", "--since", "bogus"]) == 2


def test_empty_report(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(workspace.config_path), "report", "--since", "1h"]) == 0
    assert "no finished steps" in capsys.readouterr().out
    doc = report.summary(config_module.load(workspace.config_path), None)
    assert doc["by_kind"] == [] and doc["failures"] == [] and doc["since"] is None
