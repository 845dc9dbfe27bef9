"""bump-python-version (overlord/kinds/bump_python_version.py): ``requires-python`` set in
each project's pyproject on its source branch and committed; undone by putting the branch
back. Real git repositories (tests.kit); plans run in both modes (tests.dispatch_helpers).
"""

from __future__ import annotations

import pytest

from overlord import rollback, runner
from overlord.core import config as config_module
from overlord.core.approval import parse_kind
from overlord.core.config import ActionKind
from overlord.core.parser import parse
from overlord.core.plan import PlanState, StepState
from overlord.core.registry import Registry
from overlord.kinds import registry as kind_registry
from overlord.kinds.base import Context
from tests.dispatch_helpers import (
    Env,
    branch,
    cli,
    commits_with_subject,
    env_fixture,  # noqa: F401 - the ``env`` fixture
    mode_fixture,  # noqa: F401 - the ``mode`` fixture
    plan_of,
    run_plan,
)
from tests.kit import Workspace, add_commit, add_failing_test, git, workspace_snapshot

KIND = ActionKind("bump-python-version")
SUBJECT = "Set requires-python to >=3.11"
ALL = ["core", "api", "web", "tools"]
#: core's pyproject with comments and a literal string, committed on develop by ``commented``
COMMENTED = """\
# Acme core: the shared library
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-core"  # the distribution
version = "0.1.0"
description = "Acme core"
requires-python = '{spec}'  # the oldest Python CI runs
dependencies = []

[tool.pytest.ini_options]
testpaths = ["tests"]
"""


def commented(ws: Workspace) -> None:
    core = ws.repos["core"]
    assert branch(core) == "develop"
    add_commit(core, "pyproject.toml", COMMENTED.format(spec=">=3.10"), "Comment the pyproject")


def pyproject_on(repo: object, ref: str) -> str:
    return git(repo, "show", f"{ref}:pyproject.toml")  # type: ignore[arg-type]


# --- the instruction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "projects", "spec"),
    [
        ("bump python version in core and api to 3.11", ["core", "api"], ">=3.11"),
        ("bump python version in core to >=3.11", ["core"], ">=3.11"),
        ("Bump the Python version across all projects to >= 3.12.", ALL, ">=3.12"),
        ("set requires-python in tools to >=3.10,<4", ["tools"], ">=3.10,<4"),
        ("bump python version to ~=3.12 in web", ["web"], "~=3.12"),
        ("bump python in core, api and web to v3.11", ["core", "api", "web"], ">=3.11"),
    ],
)
def test_the_forms(workspace: Workspace, text: str, projects: list[str], spec: str) -> None:
    intent = parse(text, Registry(config_module.load(workspace.config_path)))
    assert (intent.kind.value, intent.projects, intent.params) == (
        KIND.value,
        projects,
        {"specifier": spec},
    )


@pytest.mark.parametrize("spec", ["3.x", ">>3.11", "banana", ",", "3.11 and 3.12"])
def test_a_bad_specifier_is_one_line_exit_2_and_changes_nothing(
    synced_workspace: Workspace, spec: str
) -> None:
    before = workspace_snapshot(synced_workspace)
    res = cli(
        synced_workspace.config_path, "dispatch", "--yes", f"bump python version in core to {spec}"
    )
    assert res.code == 2, res.text
    assert "Traceback" not in res.text
    assert f"invalid Python version specifier {spec!r}" in res.text
    assert "use a version like 3.11 (meaning >=3.11)" in res.text
    assert workspace_snapshot(synced_workspace) == before
    assert runner.store_for(config_module.load(synced_workspace.config_path)).list_plans() == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "core: pyproject.toml on develop: no such file"),
        (
            '[tool.poetry]\nname = "acme-core"\n',
            "core: pyproject.toml on develop: no [project] table",
        ),
        (
            '[project]\nname = "acme-core"\ndynamic = ["requires-python"]\n',
            "core: pyproject.toml on develop: requires-python is dynamic",
        ),
        ("[project\n", "core: pyproject.toml on develop: invalid TOML"),
    ],
)
def test_a_project_it_cannot_edit_is_refused_before_anything_changes(
    synced_workspace: Workspace, content: str | None, says: str
) -> None:
    core = synced_workspace.repos["core"]
    if content is None:
        git(core, "rm", "-q", "pyproject.toml")
        git(core, "commit", "-q", "-m", "No pyproject")
    else:
        add_commit(core, "pyproject.toml", content, "Another pyproject")
    before = workspace_snapshot(synced_workspace)
    res = cli(
        synced_workspace.config_path,
        "dispatch",
        "--yes",
        "bump python version in api and core to 3.11",
    )
    assert res.code == 2, res.text
    assert "Traceback" not in res.text and says in res.text
    assert workspace_snapshot(synced_workspace) == before  # api's step never ran either


# --- the plan ---------------------------------------------------------------------------


def test_one_step_per_project_on_its_source_branch_local_and_reversible(
    workspace: Workspace,
) -> None:
    config = config_module.load(workspace.config_path)
    plan = plan_of(config, "bump python version in core and tools to 3.11")
    assert [(s.kind, s.project, s.params["branch"], s.params["specifier"]) for s in plan.steps] == [
        (KIND, "core", "develop", ">=3.11"),
        (KIND, "tools", "main", ">=3.11"),
    ]
    assert all(s.depends_on == [] for s in plan.steps)
    scope = plan.scope
    assert not scope.read_only and not scope.destructive
    assert scope.reversible and scope.local
    assert scope.written_projects == ["core", "tools"]
    assert parse_kind("bump-python-version") is KIND  # may be pre-approved


def test_proactive_proposes_it_and_dry_run_shows_its_scope(synced_workspace: Workspace) -> None:
    before = workspace_snapshot(synced_workspace)
    res = cli(
        synced_workspace.config_path, "dispatch", "--dry-run", "bump python version in core to 3.11"
    )
    assert res.code == 0, res.text
    assert "writes, non-destructive, reversible, local" in res.text
    assert "bump-python-version core" in res.text
    assert "proactive executes only read-only, local, non-destructive plans" in res.text
    res = cli(synced_workspace.config_path, "dispatch", "bump python version in core to 3.11")
    assert res.code == 3, res.text  # not read-only: a proactive level proposes it
    assert workspace_snapshot(synced_workspace) == before


# --- end to end -------------------------------------------------------------------------


def test_sets_requires_python_on_the_source_branch_keeping_comments(env: Env) -> None:
    commented(env.ws)
    core, api, tools = (env.ws.repos[p] for p in ("core", "api", "tools"))
    main_before = {p: git(env.ws.repos[p], "rev-parse", "main") for p in ("core", "api")}
    res = cli(
        env.ws.config_path,
        "dispatch",
        "--yes",
        "bump python version in core, api and tools to 3.11",
    )
    assert res.code == 0, res.text
    (row,) = runner.store_for(env.config).list_plans()
    plan = runner.store_for(env.config).load(row["id"])
    assert plan.state is PlanState.SUCCEEDED, plan.error
    # core: only the value changed; its comments and its literal quotes kept
    assert pyproject_on(core, "develop") == COMMENTED.format(spec=">=3.11").rstrip("\n")
    assert 'requires-python = ">=3.11"' in pyproject_on(api, "develop")
    assert 'requires-python = ">=3.11"' in pyproject_on(tools, "main")  # trunk: its main
    for repo in (core, api):
        assert commits_with_subject(repo, "develop", SUBJECT) == 1
        assert git(repo, "show", "--stat", "--format=", "develop").split()[0] == "pyproject.toml"
    assert {p: git(env.ws.repos[p], "rev-parse", "main") for p in ("core", "api")} == main_before
    for repo in (core, api, tools):
        assert git(repo, "status", "--porcelain") == ""
    assert branch(core) == "develop" and branch(tools) == "main"
    outputs = {s.project: s.output for s in plan.steps}
    assert outputs["core"].startswith("requires-python >=3.10 -> >=3.11 in pyproject.toml: ")

    # asked again: nothing to change, no second commit
    res = cli(env.ws.config_path, "dispatch", "--yes", "bump python version in core to >=3.11")
    assert res.code == 0, res.text
    assert commits_with_subject(core, "develop", SUBJECT) == 1


def test_a_later_failure_rolls_every_ref_back(env: Env) -> None:
    """core's and api's bumps, then api's tests fail: every branch, tag and HEAD of every
    repo and remote is back where it was."""
    add_failing_test(env.ws.repos["api"])
    before = workspace_snapshot(env.ws)
    text = "bump python version in core and api to 3.11; run tests in api"
    res = cli(env.ws.config_path, "dispatch", "--yes", text)
    assert res.code == 1, res.text
    assert "Traceback" not in res.text
    (row,) = runner.store_for(env.config).list_plans()
    plan = runner.store_for(env.config).load(row["id"])
    assert plan.state is PlanState.ROLLED_BACK, plan.error
    bumps = {s.project: s for s in plan.steps if s.kind is KIND}
    assert bumps["api"].state is StepState.UNDONE
    assert bumps["core"].state in (StepState.UNDONE, StepState.PENDING, StepState.SKIPPED)
    assert bumps["api"].id in plan.undone
    assert workspace_snapshot(env.ws) == before
    assert commits_with_subject(env.ws.repos["api"], "develop", SUBJECT) == 0


def test_undo_restores_the_commit_and_never_goes_over_later_work(
    synced_workspace: Workspace,
) -> None:
    config = config_module.load(synced_workspace.config_path)
    core = synced_workspace.repos["core"]
    before = git(core, "rev-parse", "develop")
    plan = run_plan(config, plan_of(config, "bump python version in core to 3.11"), yes=True)
    assert plan.state is PlanState.SUCCEEDED, plan.error
    (step,) = plan.steps
    action = kind_registry.action(KIND)
    ctx = Context(config, plan.id, step)
    assert step.undo["before"] == before and action.done(ctx, step.undo)  # a redelivery won't act

    mine = add_commit(core, "NOTES.md", "a person's later work\n", "Notes")
    refused = rollback.undo(config, plan.id, step.id)
    assert (
        refused["state"] == "undo-failed" and "moved since this plan changed it" in refused["error"]
    )
    assert git(core, "rev-parse", "develop") == mine

    git(core, "reset", "-q", "--hard", "HEAD~1")  # the person takes their commit back
    done = rollback.undo(config, plan.id, step.id)
    assert done["state"] == "undone", done
    assert git(core, "rev-parse", "develop") == before
    assert 'requires-python = ">=3.10"' in pyproject_on(core, "develop")
