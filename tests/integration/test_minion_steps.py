"""Minion steps end to end: embedded runtime, process backend, scripted OpenAI servers.

Every test dispatches through the real CLI (``overlord dispatch ... --yes --json``) on a
real workspace; the model servers are real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from overlord import rollback
from overlord.adapters.sql.store import Store
from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import Config
from overlord.core.parser import parse
from overlord.core.plan import PlanState, StepState
from overlord.core.registry import Registry
from overlord.dispatching import plan_intents
from overlord.errors import EndpointUnavailable
from overlord.routing.check import health_cache
from tests.kit import Workspace, workspace_snapshot
from tests.openai_server import ScriptedOpenAI

TASK = "implement a greeting function in core"
GREETING = "def greet(name):\n    return f'Hello, {name}!'\n"
WRITE_AND_FINISH = [
    {
        "tool_calls": [
            {"name": "write_file", "arguments": {"path": "greeting.py", "content": GREETING}}
        ]
    },
    {"content": "Added greet() in greeting.py."},
]


def configure(ws: Workspace, models: dict[str, Any], **dispatch: Any) -> Config:
    data = yaml.safe_load(ws.config_path.read_text())
    data["models"] = models
    data["minions"] = {"backend": "process"}
    data.setdefault("dispatch", {}).update(dispatch)
    ws.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_module.load(ws.config_path)


def endpoint(server: ScriptedOpenAI, tier: str, concurrent: int = 2) -> dict[str, Any]:
    return {
        "endpoint": server.url,
        "model": "scripted-14b",
        "tier": tier,
        "concurrent": concurrent,
        "health_check_url": server.health_url,
    }


def dispatch(ws: Workspace, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["--config", str(ws.config_path), "dispatch", *args, "--yes", "--json"])
    out = capsys.readouterr().out
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = out
    return code, doc


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def only_plan(config: Config) -> Any:
    assert config.state_url
    store = Store(config.state_url)
    (row,) = store.list_plans()
    return store.load(row["id"])


def test_plan_code_routes_from_the_cache_and_records_the_reason(workspace: Workspace) -> None:
    with ScriptedOpenAI() as local:
        config = configure(workspace, {"local-14b": endpoint(local, "local")})
        plan = plan_intents(config, [parse(TASK, Registry(config))])
    (step,) = plan.steps
    assert step.kind.value == "minion"
    assert (step.endpoint, step.queue, step.tier) == ("local-14b", "local-14b", "local")
    assert step.route_reason == "preferred"
    assert step.params["base"] == "develop" and step.params["task_type"] == "feature"
    assert "greeting function" in step.params["instruction"]


def test_planning_routes_by_what_it_is_handed_and_checks_nothing(workspace: Workspace) -> None:
    """The planner is pure: the health it routes by comes from its caller (the edge)."""
    from overlord.core.code_work import plan_code
    from overlord.routing import Known

    with ScriptedOpenAI() as local, ScriptedOpenAI() as cloud:
        config = configure(
            workspace,
            {"local-14b": endpoint(local, "local"), "cloud": endpoint(cloud, "cloud-fast")},
        )
        intent = parse(TASK, Registry(config))
        plan = plan_code(config, intent, known=Known({"local-14b": False}, {}))
        assert plan.steps[0].endpoint == "cloud"
        assert plan.steps[0].route_reason.startswith("fallback: local tier unhealthy")
        assert plan_code(config, intent).steps[0].endpoint == "local-14b"  # nothing known
        assert health_cache(config).all() == {}  # nothing was checked, nothing cached


def test_no_models_configured_is_one_line_bad_input(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(workspace, {})
    code = main(["--config", str(workspace.config_path), "dispatch", TASK, "--yes"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no model endpoint" in err.lower() or "needs a model endpoint" in err
    assert "Traceback" not in err


def test_minion_commits_on_its_branch_and_leaves_the_checkout_alone(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    core = workspace.root / "repos" / "core"
    branch_before, status_before = (
        git(core, "branch", "--show-current"),
        git(core, "status", "--porcelain"),
    )
    with ScriptedOpenAI(WRITE_AND_FINISH) as local:
        config = configure(workspace, {"local-14b": endpoint(local, "local")})
        code, doc = dispatch(workspace, capsys, TASK)
    assert code == 0, doc
    plan = only_plan(config)
    assert plan.state is PlanState.SUCCEEDED
    (step,) = plan.steps
    branch = f"overlord/{plan.id}/{step.id}"
    assert step.endpoint == "local-14b" and step.route_reason == "preferred"
    assert git(core, "show", f"{branch}:greeting.py") == GREETING.strip()
    assert git(core, "rev-parse", f"{branch}^") == git(core, "rev-parse", "develop")
    assert git(core, "log", "-1", "--format=%s", branch).startswith("overlord: feature:")
    assert git(core, "branch", "--show-current") == branch_before
    assert git(core, "status", "--porcelain") == status_before == ""
    assert "overlord-worktrees" not in git(core, "worktree", "list")
    # The step's undo (what a rollback runs) deletes the branch.
    result = rollback.undo(config, plan.id, step.id)
    assert result["state"] == "undone", result
    assert git(core, "branch", "--list", branch) == ""


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([{"status": 500}], "HTTP 500"),
        pytest.param([{"sleep": 30}], "timed out", marks=pytest.mark.slow),
        (
            [
                {
                    "raw_tool_calls": [
                        {"id": f"c{i}", "type": "function", "function": {"name": "nope"}}
                    ]
                }
                for i in range(3)
            ],
            "malformed tool calls",
        ),
    ],
    ids=["http-500", "timeout", "malformed-tool-calls"],
)
def test_failing_model_fails_the_step_and_rolls_back(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], script: list[Any], expected: str
) -> None:
    before = workspace_snapshot(workspace)
    with ScriptedOpenAI(script) as local:
        config = configure(
            workspace, {"local-14b": endpoint(local, "local")}, step_timeout_default=4
        )
        code, doc = dispatch(workspace, capsys, TASK)
    assert code == 1, doc
    plan = only_plan(config)
    assert plan.state is PlanState.ROLLED_BACK
    (step,) = plan.steps
    assert step.state is StepState.UNDONE or step.state is StepState.FAILED
    assert expected in (step.error or ""), step.error
    assert "minion on local-14b failed" in (step.error or "")
    assert workspace_snapshot(workspace) == before


def test_local_tier_down_falls_back_to_cloud_fast(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed scenario 5: the local backend's health URL is down → cloud-fast does the work."""
    with ScriptedOpenAI(health_status=503) as local, ScriptedOpenAI(WRITE_AND_FINISH) as cloud:
        config = configure(
            workspace,
            {"local-14b": endpoint(local, "local"), "cloud-fast": endpoint(cloud, "cloud-fast")},
        )
        code, doc = dispatch(workspace, capsys, TASK)
        assert local.chat_count == 0
        assert cloud.chat_count == 2
    assert code == 0, doc
    (step,) = only_plan(config).steps
    assert step.endpoint == "cloud-fast"
    assert step.route_reason and step.route_reason.startswith("fallback:")
    assert "local-14b down (HTTP 503)" in step.route_reason
    core = workspace.root / "repos" / "core"
    assert git(core, "show", f"overlord/{only_plan(config).id}/{step.id}:greeting.py")


def test_endpoint_failing_at_call_time_is_marked_down_and_the_step_falls_back(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    with ScriptedOpenAI([{"status": 502}]) as local, ScriptedOpenAI(WRITE_AND_FINISH) as cloud:
        config = configure(
            workspace,
            {"local-14b": endpoint(local, "local"), "cloud-fast": endpoint(cloud, "cloud-fast")},
        )
        code, doc = dispatch(workspace, capsys, TASK)
    assert code == 0, doc
    (step,) = only_plan(config).steps
    assert step.endpoint == "cloud-fast"
    assert step.route_reason and "local-14b failed at call time" in step.route_reason
    assert "HTTP 502" in step.route_reason
    record = health_cache(config).get("local-14b")
    assert record is not None and not record.healthy and "HTTP 502" in record.status
    # overlord plans show names the endpoint and the reason
    capsys.readouterr()
    assert (
        main(["--config", str(workspace.config_path), "plans", "show", only_plan(config).id]) == 0
    )
    shown = capsys.readouterr().out
    assert "cloud-fast" in shown and "failed at call time" in shown


def test_forced_tier_that_is_down_is_refused_in_one_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    before = workspace_snapshot(workspace)
    with ScriptedOpenAI(health_status=500) as local, ScriptedOpenAI() as cloud:
        configure(
            workspace,
            {"local-14b": endpoint(local, "local"), "cloud-heavy": endpoint(cloud, "cloud-heavy")},
        )
        capsys.readouterr()
        code = main(
            ["--config", str(workspace.config_path), "dispatch", TASK, "--tier", "local", "--yes"]
        )
        # (the scripted server may log a dropped health connection on stderr: keep ours)
        err = capsys.readouterr().err
        assert local.chat_count == 0 and cloud.chat_count == 0
    assert code == 2
    ours = [line for line in err.splitlines() if line.startswith(("error:", "hint:"))]
    assert len(ours) == 2, err
    assert "tier local was forced" in ours[0] and "local-14b down (HTTP 500)" in ours[0]
    assert workspace_snapshot(workspace) == before


def test_forced_tier_is_used_when_healthy(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    with ScriptedOpenAI() as local, ScriptedOpenAI(WRITE_AND_FINISH) as heavy:
        config = configure(
            workspace,
            {"local-14b": endpoint(local, "local"), "cloud-heavy": endpoint(heavy, "cloud-heavy")},
        )
        code, doc = dispatch(workspace, capsys, TASK, "--tier", "cloud-heavy")
        assert local.chat_count == 0
    assert code == 0, doc
    (step,) = only_plan(config).steps
    assert step.endpoint == "cloud-heavy" and step.route_reason == "forced tier cloud-heavy"


def test_a_stale_down_record_is_checked_again_before_code_work_is_refused(
    workspace: Workspace,
) -> None:
    from datetime import timedelta

    from overlord.routing.health import HealthRecord, utcnow

    with ScriptedOpenAI() as local:
        config = configure(workspace, {"local-14b": endpoint(local, "local")})
        edited = time.time() - 120  # records older than the config file are not used at all
        os.utime(workspace.config_path, (edited, edited))
        cache = health_cache(config)
        # down a minute ago, still within health_interval: the cache alone would refuse
        cache.put(
            HealthRecord("local-14b", False, "connection refused", utcnow() - timedelta(seconds=60))
        )
        plan = plan_intents(config, [parse(TASK, Registry(config))])
        (step,) = plan.steps
        assert (step.endpoint, step.route_reason) == ("local-14b", "preferred")
        record = cache.get("local-14b")
        assert record is not None and record.healthy and record.age() < 5
    # a failure seen just now is trusted: the work is refused at once, in one line
    cache.put(HealthRecord("local-14b", False, "connection refused", utcnow()))
    with pytest.raises(EndpointUnavailable, match="local-14b down"):
        plan_intents(config, [parse(TASK, Registry(config))])
