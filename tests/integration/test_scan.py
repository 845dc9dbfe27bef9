"""The read-only status scan as a plan step (nightly schedules remember the state)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord import memory
from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import ActionKind
from overlord.core.parser import IntentKind, parse
from overlord.core.planner import plan_for
from overlord.core.registry import Registry
from tests.kit import Workspace, make_dirty, workspace_snapshot


@pytest.mark.parametrize(
    ("text", "projects"),
    [
        ("status", ["core", "api", "web", "tools"]),
        ("status of core and api", ["core", "api"]),
        ("scan all projects", ["core", "api", "web", "tools"]),
        ("scan web", ["web"]),
    ],
)
def test_scan_forms(workspace: Workspace, text: str, projects: list[str]) -> None:
    config = config_module.load(workspace.config_path)
    intent = parse(text, Registry(config))
    assert intent.kind is IntentKind.SCAN and intent.projects == projects
    plan = plan_for(intent, config)
    assert {s.kind for s in plan.steps} == {ActionKind.SCAN}
    assert plan.scope.read_only and not plan.scope.destructive


def test_scan_runs_on_a_dirty_tree_changes_nothing_and_is_remembered(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    make_dirty(workspace.repos["web"])
    before = workspace_snapshot(workspace)
    code = main(["--config", str(workspace.config_path), "dispatch", "status of all projects"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "succeeded" in out
    assert workspace_snapshot(workspace) == before
    config = config_module.load(workspace.config_path)
    assert config.state_url
    found = memory.search(config.state_url, "dirty", project="web")
    assert found and "web: develop dirty" in found[0].content
    core = memory.search(config.state_url, "stale", project="core")
    assert core and "stale branch" in core[0].content


def test_scan_of_a_missing_repo_is_refused_before_anything_runs(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = workspace.config_path.read_text().replace(
        str(workspace.repos["tools"]), str(tmp_path / "gone")
    )
    workspace.config_path.write_text(text)
    code = main(["--config", str(workspace.config_path), "dispatch", "scan tools"])
    err = capsys.readouterr().err
    assert code == 2 and "missing or not a git repository" in err and "Traceback" not in err
