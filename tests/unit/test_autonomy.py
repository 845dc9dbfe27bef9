"""The autonomy policy (SPEC §4.1) and `overlord autonomy`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from overlord.core.approval import BLAST_LIMITS, AutonomyPolicy, Decision, Verdict
from overlord.core.config import ActionKind, Config, Level, load, parse
from overlord.core.scope import ActionScope, Impact, Touch

K = ActionKind
PROJECTS = ["core", "app", "web", "api", "cli", "docs", "tools"]


def make_config(
    level: Level | str,
    overrides: dict[str, str] | None = None,
    pre_approved: dict[str, list[str]] | None = None,
) -> Config:
    lines = ["projects:"]
    for name in PROJECTS:
        deps = "[]" if name == "core" else "[core]"
        role = "shared-library" if name == "core" else "application"
        lines += [f"  {name}: {{path: /nonexistent/{name}, role: {role}, depends_on: {deps}}}"]
    lines += ["autonomy:", f"  global: {Level(level).value}"]
    if overrides:
        lines += ["  overrides:"] + [f"    {p}: {lv}" for p, lv in overrides.items()]
    if pre_approved:
        lines += ["  pre_approved:"] + [
            f"    {p}: [{', '.join(k)}]" for p, k in pre_approved.items()
        ]
    return parse("\n".join(lines) + "\n", Path("/nonexistent/overlord.yml"))


@dataclass(frozen=True)
class Plan:
    touches: tuple[Touch, ...]
    is_release: bool = False

    @property
    def kinds(self) -> set[ActionKind]:
        return {t.kind for t in self.touches}

    @property
    def scope(self) -> ActionScope:
        return ActionScope.of(self.touches, shared_libraries=["core"])


def touches(kind: ActionKind, *projects: str) -> tuple[Touch, ...]:
    return tuple(Touch(kind, p) for p in projects)


RELEASE_TOUCHES = (
    *touches(K.RUN_TESTS, "core"),
    *touches(K.BUMP_VERSION, "core"),
    *touches(K.MERGE, "core"),
    *touches(K.TAG, "core"),
    *touches(K.UPDATE_DEPENDENCY, "app"),
    *touches(K.RUN_TESTS, "app"),
)
PLANS = {
    "run-tests": Plan(touches(K.RUN_TESTS, "core", "app")),
    "merge": Plan(touches(K.MERGE, "app")),
    "clean-stale": Plan(touches(K.CLEAN_STALE_BRANCHES, "app")),
    "release": Plan(RELEASE_TOUCHES, is_release=True),
    "release-push": Plan((*RELEASE_TOUCHES, *touches(K.PUSH, "core", "app")), is_release=True),
    "push": Plan(touches(K.PUSH, "app")),
    "blast": Plan(touches(K.MERGE, "app", "web", "api", "cli", "docs", "tools")),
}
#: Under scheduled, everything that can be pre-approved is, for every project.
ALL_APPROVED = {p: [k.value for k in ActionKind if k is not K.PUSH] for p in PROJECTS}

E, P = Decision.EXECUTE, Decision.PROPOSE
EXPECTED = {
    # plan:          cautious, proactive, scheduled (all pre-approved), scheduled (none)
    "run-tests": (P, E, E, P),
    "merge": (P, P, E, P),
    "clean-stale": (P, P, E, P),
    "release": (P, P, P, P),
    "release-push": (P, P, P, P),
    "push": (P, P, P, P),
    "blast": (P, P, P, P),
}
SETTINGS = {
    "cautious": (Level.CAUTIOUS, None),
    "proactive": (Level.PROACTIVE, None),
    "scheduled-approved": (Level.SCHEDULED, ALL_APPROVED),
    "scheduled-unapproved": (Level.SCHEDULED, None),
}


def decide(setting: str, plan: str, **kwargs: bool) -> Verdict:
    level, approved = SETTINGS[setting]
    policy = AutonomyPolicy(make_config(level, pre_approved=approved))
    p = PLANS[plan]
    return policy.decide(p.kinds, p.scope, is_release=p.is_release, **kwargs)


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("scheduled_run", [False, True])
def test_matrix_without_yes(setting: str, plan: str, scheduled_run: bool) -> None:
    verdict = decide(setting, plan, scheduled_run=scheduled_run)
    expected = EXPECTED[plan][list(SETTINGS).index(setting)]
    assert verdict.decision is expected, verdict.reason
    assert verdict.needs_person is (expected is P or verdict.push_needs_person)
    assert verdict.push_needs_person is (K.PUSH in PLANS[plan].kinds)
    assert verdict.level is SETTINGS[setting][0]
    assert verdict.reason and "\n" not in verdict.reason


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_yes_approves_everything_but_the_push(setting: str, plan: str) -> None:
    verdict = decide(setting, plan, yes=True)
    has_push = K.PUSH in PLANS[plan].kinds
    assert verdict.decision is E, verdict.reason
    assert verdict.push_needs_person is has_push
    assert verdict.needs_person is has_push
    if has_push:
        assert "push still waits for a person" in verdict.reason


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_scheduled_run_ignores_yes(setting: str, plan: str) -> None:
    with_yes = decide(setting, plan, yes=True, scheduled_run=True)
    without = decide(setting, plan, scheduled_run=True)
    assert with_yes == without


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_translation_is_never_covered_by_yes(setting: str, plan: str) -> None:
    """SPEC §4.1: a plan a model translated is proposed at every level, --yes or not."""
    for yes in (False, True):
        verdict = decide(setting, plan, yes=yes, translated=True)
        assert verdict.decision is P and verdict.needs_person
        assert "--yes does not cover a translation" in verdict.reason


def test_release_reason_and_yes_covers_release() -> None:
    verdict = decide("scheduled-approved", "release")
    assert verdict.decision is P and "release always needs a person" in verdict.reason
    approved = decide("scheduled-approved", "release", yes=True)
    assert approved.decision is E and not approved.needs_person


def test_push_reason() -> None:
    verdict = decide("proactive", "push")
    assert "push to a remote always needs a person" in verdict.reason


def test_blast_radius_reason_names_what_exceeded() -> None:
    verdict = decide("scheduled-approved", "blast")
    assert verdict.decision is P
    assert "blast radius exceeds the scheduled limit" in verdict.reason
    assert "impact high > medium" in verdict.reason


def test_blast_excess_counts_written_projects_under_proactive() -> None:
    policy = AutonomyPolicy(make_config("proactive"))
    scope = PLANS["blast"].scope
    assert len(scope.written_projects) == 6
    excess = policy.blast_excess(Level.PROACTIVE, scope)
    assert "6 written projects > 5 allowed" in excess
    assert BLAST_LIMITS[Level.PROACTIVE].max_impact is Impact.MEDIUM
    assert policy.blast_excess(Level.SCHEDULED, PLANS["clean-stale"].scope) == []


def test_scheduled_medium_impact_allowed_high_escalates() -> None:
    policy = AutonomyPolicy(make_config("scheduled", pre_approved=ALL_APPROVED))
    three = Plan(touches(K.MERGE, "app", "web", "api"))
    four = Plan(touches(K.MERGE, "app", "web", "api", "cli"))
    assert three.scope.estimated_impact is Impact.MEDIUM
    assert policy.decide(three.kinds, three.scope).decision is E
    assert four.scope.estimated_impact is Impact.HIGH
    assert policy.decide(four.kinds, four.scope).decision is P


def test_scheduled_needs_preapproval_per_project() -> None:
    policy = AutonomyPolicy(make_config("scheduled", pre_approved={"app": ["run-tests"]}))
    only_app = PLANS["run-tests"].touches[1:]
    assert policy.decide({K.RUN_TESTS}, ActionScope.of(only_app)).decision is E
    both = PLANS["run-tests"]
    verdict = policy.decide(both.kinds, both.scope)
    assert verdict.decision is P
    assert "not pre-approved: run-tests in core" in verdict.reason
    assert policy.is_pre_approved(K.RUN_TESTS, ["app"])
    assert not policy.is_pre_approved(K.RUN_TESTS, ["app", "core"])
    assert not policy.is_pre_approved(K.RUN_TESTS, [])
    assert policy.is_pre_approved(K.NOOP, ["core"])


def test_touches_make_preapproval_precise() -> None:
    policy = AutonomyPolicy(
        make_config("scheduled", pre_approved={"app": ["update-dependency", "run-tests"]})
    )
    plan = Plan((*touches(K.UPDATE_DEPENDENCY, "app"), *touches(K.RUN_TESTS, "app")))
    assert policy.decide(plan.kinds, plan.scope, touches=plan.touches).decision is E
    mixed = Plan((*touches(K.UPDATE_DEPENDENCY, "app"), *touches(K.RUN_TESTS, "core")))
    policy2 = AutonomyPolicy(
        make_config(
            "scheduled",
            pre_approved={"app": ["update-dependency"], "core": ["run-tests"]},
        )
    )
    assert policy2.decide(mixed.kinds, mixed.scope, touches=mixed.touches).decision is E
    assert policy2.decide(mixed.kinds, mixed.scope).decision is P  # without touches: cautious


def test_levels_overrides_and_strictest_wins() -> None:
    policy = AutonomyPolicy(
        make_config("proactive", overrides={"core": "cautious", "app": "scheduled"})
    )
    assert policy.level_for("core") is Level.CAUTIOUS
    assert policy.level_for("web") is Level.PROACTIVE
    assert policy.effective_level(["web", "app"]) is Level.SCHEDULED
    assert policy.effective_level(["web", "app", "core"]) is Level.CAUTIOUS
    assert policy.effective_level([]) is Level.PROACTIVE
    # A read-only plan touching the cautious project is proposed; without it, it executes.
    plan = PLANS["run-tests"]
    assert policy.decide(plan.kinds, plan.scope).decision is P
    web = Plan(touches(K.RUN_TESTS, "web", "docs"))
    assert policy.decide(web.kinds, web.scope).decision is E


# --- seed scenarios ----------------------------------------------------------------


def test_seed_cautious_everything_proposed() -> None:
    policy = AutonomyPolicy(make_config("cautious"))
    for plan in PLANS.values():
        assert policy.should_propose(plan.kinds, plan.scope)
        assert not policy.can_auto_execute(plan.kinds, plan.scope)


def test_seed_proactive_read_only_executes_stale_cleanup_proposed() -> None:
    policy = AutonomyPolicy(make_config("proactive"))
    tests, clean = PLANS["run-tests"], PLANS["clean-stale"]
    assert policy.can_auto_execute(tests.kinds, tests.scope)
    assert policy.should_propose(clean.kinds, clean.scope)
    verdict = policy.decide(clean.kinds, clean.scope)
    assert "is destructive" in verdict.reason


def test_seed_scheduled_preapproved_runs_unattended_others_proposed() -> None:
    policy = AutonomyPolicy(
        make_config(
            "scheduled",
            pre_approved={"core": ["run-tests"], "app": ["run-tests", "clean-stale-branches"]},
        )
    )
    tests, clean, merge = PLANS["run-tests"], PLANS["clean-stale"], PLANS["merge"]
    nightly = policy.decide(tests.kinds, tests.scope, scheduled_run=True)
    assert nightly.decision is E and not nightly.needs_person
    assert policy.can_auto_execute(clean.kinds, clean.scope)
    assert policy.should_propose(merge.kinds, merge.scope)


def test_push_in_plan_never_auto_executes() -> None:
    policy = AutonomyPolicy(make_config("scheduled", pre_approved=ALL_APPROVED))
    push = PLANS["push"]
    assert not policy.can_auto_execute(push.kinds, push.scope)
    assert policy.decide(push.kinds, push.scope, yes=True).push_needs_person


# --- the command -------------------------------------------------------------------

CLI_CONFIG = """\
# overlord config for the CLI tests
projects:
  core: {{path: {tmp}}}     # the library

  app: {{path: {tmp}, depends_on: [core]}}   # depends on core
# end
"""


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    path = tmp_path / "overlord.yml"
    path.write_text(CLI_CONFIG.format(tmp=tmp_path))
    return path


def run(*args: str) -> int:
    from overlord.cli.app import main

    return main(["autonomy", *args])


def test_cli_show_json(cli_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--config", str(cli_config), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["global"] == "proactive"
    assert doc["projects"] == [
        {"name": "core", "level": "proactive", "override": False, "pre_approved": []},
        {"name": "app", "level": "proactive", "override": False, "pre_approved": []},
    ]


def test_cli_show_table(cli_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--config", str(cli_config)) == 0
    out = capsys.readouterr().out
    assert "global level: proactive" in out and "core" in out and "app" in out


def test_cli_changes_persist_and_keep_comments(
    cli_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = cli_config.read_text()
    c = str(cli_config)
    assert run("--config", c, "--global", "scheduled") == 0
    assert run("--config", c, "--project", "Core", "cautious") == 0
    assert run("--config", c, "--approve", "APP", "run-tests") == 0
    assert run("--config", c, "--approve", "app", "merge", "--revoke", "app", "run-tests") == 0
    capsys.readouterr()
    config = load(cli_config)
    assert config.autonomy.global_ is Level.SCHEDULED
    assert config.autonomy.overrides == {"core": Level.CAUTIOUS}
    assert config.autonomy.pre_approved == {"app": [K.MERGE]}
    after = cli_config.read_text()
    for line in before.splitlines():
        assert line in after.splitlines()
    assert run("--config", c, "--list-approved", "--json") == 0
    assert json.loads(capsys.readouterr().out)["pre_approved"] == {"app": ["merge"]}
    assert run("--config", c, "--list-approved") == 0
    assert "app: merge" in capsys.readouterr().out


def test_cli_change_with_json_is_one_document(
    cli_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--config", str(cli_config), "--global", "cautious", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["global"] == "cautious" and doc["changes"] == ["global level: cautious"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--global", "reckless"], "unknown autonomy level 'reckless'"),
        (["--project", "core", "yolo"], "unknown autonomy level 'yolo'"),
        (["--approve", "app", "fly"], "unknown action kind 'fly'"),
        (["--approve", "app", "push"], "push cannot be pre-approved"),
        (["--revoke", "app", "merge"], "merge is not pre-approved for app"),
        (["--project", "ghost", "cautious"], "unknown project 'ghost'"),
    ],
)
def test_cli_bad_input_exit_2_one_line(
    cli_config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = cli_config.read_bytes()
    assert run("--config", str(cli_config), *args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert "Traceback" not in captured.err
    if "level" in message or "kind" in message:
        assert "cautious, proactive, scheduled" in error_lines[0] or "run-tests" in error_lines[0]
    assert cli_config.read_bytes() == before


def test_cli_nothing_written_when_a_later_input_is_bad(cli_config: Path) -> None:
    before = cli_config.read_bytes()
    assert run("--config", str(cli_config), "--global", "cautious", "--approve", "app", "x") == 2
    assert cli_config.read_bytes() == before
