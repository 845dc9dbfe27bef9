"""Several instructions in one text (SPEC §3): split on ``;`` and new lines, parsed by the
same parser, planned as one plan without any model."""

from __future__ import annotations

import pytest

from overlord.core import config as config_module
from overlord.core.config import ActionKind
from overlord.core.parser import IntentKind, parse_all, split_instructions
from overlord.core.plan import PlanState
from overlord.core.planner import plan_for_all
from overlord.core.registry import Registry
from overlord.errors import NoFormMatches, ParseError, ProjectLookupError
from tests.dispatch_helpers import cli, plan_of, tag_type
from tests.kit import Workspace, workspace_snapshot


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("run tests in core", ["run tests in core"]),
        ("run tests in core; tag core 1.0", ["run tests in core", "tag core 1.0"]),
        ("run tests in core\n\ntag core 1.0\r\n", ["run tests in core", "tag core 1.0"]),
        (" ; run tests in core ;; ", ["run tests in core"]),
        ("", []),
    ],
)
def test_split(text: str, pieces: list[str]) -> None:
    assert split_instructions(text) == pieces


def test_each_piece_is_one_intent(synced_workspace: Workspace) -> None:
    registry = Registry(config_module.load(synced_workspace.config_path))
    intents = parse_all("merge develop to main in core;\ntag core 0.2.0\nstatus", registry)
    assert [i.kind for i in intents] == [IntentKind.MERGE, IntentKind.TAG, IntentKind.SCAN]
    assert [i.text for i in intents] == [
        "merge develop to main in core",
        "tag core 0.2.0",
        "status",
    ]


def test_a_piece_no_form_matches_refuses_the_whole_text(synced_workspace: Workspace) -> None:
    registry = Registry(config_module.load(synced_workspace.config_path))
    with pytest.raises(NoFormMatches, match=r"line 2 \('frobnicate core'\): cannot understand"):
        parse_all("run tests in core; frobnicate core", registry)
    with pytest.raises(ProjectLookupError, match="line 1"):
        parse_all("run tests in nosuch\nrun tests in core", registry)
    with pytest.raises(ParseError, match="empty task"):
        parse_all(" ; ;", registry)


def test_one_plan_later_lines_after_earlier_ones_on_the_same_repo(
    synced_workspace: Workspace,
) -> None:
    config = config_module.load(synced_workspace.config_path)
    text = "merge develop to main in core; tag core 0.2.0\nrun tests in core and api"
    plan = plan_for_all(parse_all(text, Registry(config)), config)
    assert plan.task == "merge develop to main in core; tag core 0.2.0; run tests in core and api"
    shape = [(s.id, s.kind, s.project, s.depends_on) for s in plan.steps]
    assert shape == [
        ("s1", ActionKind.MERGE, "core", []),
        ("s2", ActionKind.TAG, "core", ["s1"]),
        ("s3", ActionKind.RUN_TESTS, "core", ["s2"]),
        ("s4", ActionKind.RUN_TESTS, "api", []),  # another repository: free to run at once
    ]
    assert set(plan.scope.projects) == {"api", "core"}
    assert not plan.scope.read_only


def test_a_release_among_instructions_keeps_the_release_kind(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    release = plan_of(config, "release core 0.2.0")
    plan = plan_for_all(parse_all("run tests in web; release core 0.2.0", Registry(config)), config)
    assert plan.kind == "release"
    assert len(plan.steps) == 1 + len(release.steps)
    # every release step keeps its own order; web's tests come first, then the release's
    # steps on web wait for them
    web = [s for s in plan.steps if s.project == "web"]
    assert web[0].kind is ActionKind.RUN_TESTS and web[0].depends_on == []
    assert all(len(s.depends_on) >= 1 for s in web[1:])
    assert web[0].id in web[1].depends_on
    plan.validate_dag()


def test_several_instructions_run_as_one_plan(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    res = cli(ws.config_path, "dispatch", "--yes", "merge develop to main in core; tag core 0.2.0")
    assert res.code == 0, res.text
    assert "succeeded" in res.text
    assert tag_type(ws.repos["core"], "v0.2.0") == "tag"
    plans = cli(ws.config_path, "plans", "--json").json()["plans"]
    assert len(plans) == 1 and plans[0]["state"] == PlanState.SUCCEEDED.value


def test_several_instructions_with_one_unknown_form_change_nothing(
    synced_workspace: Workspace,
) -> None:
    ws = synced_workspace
    before = workspace_snapshot(ws)
    res = cli(ws.config_path, "dispatch", "--yes", "merge develop to main in core\nmake it nice")
    assert res.code == 2, res.text
    assert "line 2" in res.text and "closest form" in res.text
    assert workspace_snapshot(ws) == before
    assert cli(ws.config_path, "plans", "--json").json()["plans"] == []
