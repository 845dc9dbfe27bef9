"""Tests for the task parser (SPEC §3): every form, names, versions, errors, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlord.core import config
from overlord.core.parser import (
    SUPPORTED_FORMS,
    Complexity,
    Intent,
    IntentKind,
    TaskType,
    closest_form,
    normalize,
    parse,
)
from overlord.core.registry import Registry
from overlord.errors import OverlordError, ParseError, ProjectLookupError, VersionError
from overlord.kinds.minion import DEFAULT_COMPLEXITY

CONFIG = """
projects:
  nebulus-core:
    path: /nonexistent/core
    package: acme-core
  nebulus-prime:
    path: /nonexistent/prime
    depends_on: [nebulus-core]
  gantry:
    path: /nonexistent/gantry
    depends_on: [nebulus-core]
  tools.v2:
    path: /nonexistent/tools
"""
ALL = ["nebulus-core", "nebulus-prime", "gantry", "tools.v2"]


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(config.parse(CONFIG, Path("/tmp/x.yml")))


def _registry(yaml_text: str) -> Registry:
    return Registry(config.parse(yaml_text, Path("/tmp/x.yml")))


# --- merge ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "merge core develop to main",
        "merge develop into main in core",
        "Merge nebulus-core develop into main.",
        "please merge   develop to main in Core",
        "MERGE DEVELOP TO MAIN IN NEBULUS-CORE",
    ],
)
def test_merge_forms(registry: Registry, text: str) -> None:
    intent = parse(text, registry)
    assert intent.kind is IntentKind.MERGE
    assert intent.projects == ["nebulus-core"]
    assert (intent.source.lower(), intent.target.lower()) == ("develop", "main")  # type: ignore[union-attr]
    assert intent.project == "nebulus-core"
    assert intent.text == text.strip()
    assert intent.task_type is None and intent.complexity is None


def test_merge_keeps_branch_case_and_slashes(registry: Registry) -> None:
    intent = parse("merge gantry Feature/Login-2 into release/1.0", registry)
    assert (intent.source, intent.target, intent.projects) == (
        "Feature/Login-2",
        "release/1.0",
        ["gantry"],
    )


@pytest.mark.parametrize(
    "text",
    [
        "merge develop to main",  # no project
        "merge core develop to main in core",  # project twice
        "merge core main into main",  # same branch
    ],
)
def test_merge_refused(registry: Registry, text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text, registry)
    assert "\n" not in info.value.message


def test_merge_unknown_project(registry: Registry) -> None:
    with pytest.raises(ProjectLookupError, match="unknown project 'nope'"):
        parse("merge develop to main in nope", registry)


# --- tag / release -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "version"),
    [
        ("tag core v0.2.0", IntentKind.TAG, "0.2.0"),
        ("tag core 0.2.0", IntentKind.TAG, "0.2.0"),
        ("tag Core as V1.0.0.", IntentKind.TAG, "1.0.0"),
        ("release core v0.2.0", IntentKind.RELEASE, "0.2.0"),
        ("please release nebulus-core 1.2.3-rc.1", IntentKind.RELEASE, "1.2.3rc1"),
        ("release core version 2.0.0.post1", IntentKind.RELEASE, "2.0.0.post1"),
        ("release core 1.0.0-alpha", IntentKind.RELEASE, "1.0.0a0"),
    ],
)
def test_versioned_forms(registry: Registry, text: str, kind: IntentKind, version: str) -> None:
    intent = parse(text, registry)
    assert (intent.kind, intent.projects, intent.version) == (kind, ["nebulus-core"], version)


@pytest.mark.parametrize("text", ["release core banana", "tag core 1.0.0-", "release core v"])
def test_invalid_version(registry: Registry, text: str) -> None:
    with pytest.raises(VersionError) as info:
        parse(text, registry)
    assert "not a PEP 440 version" in info.value.message
    assert info.value.hint and "1.2.3" in info.value.hint
    assert info.value.exit_code == 2


def test_release_needs_a_version(registry: Registry) -> None:
    with pytest.raises(ParseError, match='closest form: "release P VERSION"'):
        parse("release core", registry)


# --- lists ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "projects"),
    [
        ("run tests in core", ["nebulus-core"]),
        ("run tests across core and gantry", ["nebulus-core", "gantry"]),
        ("run tests for prime, gantry and core", ["nebulus-prime", "gantry", "nebulus-core"]),
        ("run tests in prime, gantry, and core.", ["nebulus-prime", "gantry", "nebulus-core"]),
        ("run tests across all projects", ALL),
        ("run the tests in all", ALL),
        ("run tests for every project", ALL),
        ("Run Tests In Gantry And Gantry", ["gantry"]),
        ("test core", ["nebulus-core"]),
        ("test gantry and tools.v2", ["gantry", "tools.v2"]),
        ("test all projects", ALL),
        ("  please   run  tests\tacross\ncore ,gantry  ", ["nebulus-core", "gantry"]),
    ],
)
def test_run_tests(registry: Registry, text: str, projects: list[str]) -> None:
    intent = parse(text, registry)
    assert intent.kind is IntentKind.RUN_TESTS
    assert intent.projects == projects


@pytest.mark.parametrize(
    ("text", "projects"),
    [
        ("clean stale branches in core", ["nebulus-core"]),
        ("clean stale branches across all projects", ALL),
        (
            "Clean up stale branches in gantry, prime and core.",
            ["gantry", "nebulus-prime", "nebulus-core"],
        ),
    ],
)
def test_clean_stale_branches(registry: Registry, text: str, projects: list[str]) -> None:
    intent = parse(text, registry)
    assert (intent.kind, intent.projects) == (IntentKind.CLEAN_STALE_BRANCHES, projects)


def test_all_projects_with_no_projects() -> None:
    with pytest.raises(ParseError, match="no projects are configured"):
        parse("run tests across all projects", _registry("projects: {}\n"))


def test_unknown_project_in_list(registry: Registry) -> None:
    with pytest.raises(ProjectLookupError) as info:
        parse("run tests in core and nowhere", registry)
    assert "nowhere" in info.value.message
    assert info.value.hint and "gantry" in info.value.hint


def test_ambiguous_project(registry: Registry) -> None:
    with pytest.raises(ProjectLookupError, match="ambiguous") as info:
        parse("run tests in nebulus", registry)
    assert "nebulus-core" in info.value.message and "nebulus-prime" in info.value.message


# --- update --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "dependency", "version", "projects"),
    [
        ("update core to 0.3.0 in gantry", "nebulus-core", "0.3.0", ["gantry"]),
        (
            "update acme-core to v0.3 in prime and gantry",
            "nebulus-core",
            "0.3",
            ["nebulus-prime", "gantry"],
        ),
        ("update Acme_Core in gantry", "nebulus-core", None, ["gantry"]),
        (
            "update nebulus-core in all projects",
            "nebulus-core",
            None,
            ["nebulus-prime", "gantry", "tools.v2"],
        ),
        ("update requests to 2.32.3 in gantry", "requests", "2.32.3", ["gantry"]),
        ("update PyYAML across core, prime", "PyYAML", None, ["nebulus-core", "nebulus-prime"]),
        # a bare prefix of a project is an outside package, not that project
        ("update gan in core", "gan", None, ["nebulus-core"]),
    ],
)
def test_update(
    registry: Registry, text: str, dependency: str, version: str | None, projects: list[str]
) -> None:
    intent = parse(text, registry)
    assert intent.kind is IntentKind.UPDATE_DEPENDENCY
    assert (intent.dependency, intent.version, intent.projects) == (dependency, version, projects)


def test_update_refusals(registry: Registry) -> None:
    with pytest.raises(ParseError, match="cannot depend on itself"):
        parse("update core in core and gantry", registry)
    with pytest.raises(VersionError):
        parse("update core to latest in gantry", registry)
    with pytest.raises(ParseError, match="not a package name"):
        parse("update -bad- in gantry", registry)
    with pytest.raises(ParseError, match='closest form: "update DEP'):
        parse("update core to 1.0", registry)


# --- code work -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "task", "projects", "instruction"),
    [
        ("format core", TaskType.FORMAT, ["nebulus-core"], "format"),
        ("format in core and gantry", TaskType.FORMAT, ["nebulus-core", "gantry"], "format"),
        ("lint all projects", TaskType.LINT, ALL, "lint"),
        ("lint across prime", TaskType.LINT, ["nebulus-prime"], "lint"),
        ("fix lint in core", TaskType.LINT, ["nebulus-core"], "fix lint"),
        ("Fix lint errors in gantry.", TaskType.LINT, ["gantry"], "fix lint errors"),
        (
            "implement a retry decorator in core",
            TaskType.FEATURE,
            ["nebulus-core"],
            "implement a retry decorator",
        ),
        (
            "fix the crash on empty input in gantry",
            TaskType.DEBUGGING,
            ["gantry"],
            "fix the crash on empty input",
        ),
        (
            "debug flaky login test in prime",
            TaskType.DEBUGGING,
            ["nebulus-prime"],
            "debug flaky login test",
        ),
        (
            "refactor the config loader in core",
            TaskType.FEATURE,
            ["nebulus-core"],
            "refactor the config loader",
        ),
        (
            "add boilerplate for a CLI in gantry",
            TaskType.BOILERPLATE,
            ["gantry"],
            "add boilerplate for a CLI",
        ),
        ("add boilerplate in gantry", TaskType.BOILERPLATE, ["gantry"], "add boilerplate"),
        ("scaffold a plugin in core", TaskType.BOILERPLATE, ["nebulus-core"], "scaffold a plugin"),
        (
            "plan the migration to pydantic 2",
            TaskType.PLANNING,
            [],
            "plan the migration to pydantic 2",
        ),
        (
            "plan the migration for core and gantry",
            TaskType.PLANNING,
            ["nebulus-core", "gantry"],
            "plan the migration",
        ),
        (
            "design a cache layer in core",
            TaskType.ARCHITECTURE,
            ["nebulus-core"],
            "design a cache layer",
        ),
        # a suffix that names no project stays part of the text
        ("design support for postgres", TaskType.ARCHITECTURE, [], "design support for postgres"),
    ],
)
def test_code_forms(
    registry: Registry, text: str, task: TaskType, projects: list[str], instruction: str
) -> None:
    intent = parse(text, registry)
    assert intent.kind is IntentKind.MINION
    assert (intent.task_type, intent.projects, intent.instruction) == (task, projects, instruction)
    assert intent.complexity is DEFAULT_COMPLEXITY[task]


def test_free_text_keeps_case_and_inner_in(registry: Registry) -> None:
    intent = parse("implement Caching in the HTTP layer in core", registry)
    assert intent.instruction == "implement Caching in the HTTP layer"
    assert intent.projects == ["nebulus-core"]


def test_review(registry: Registry) -> None:
    intent = parse("review feature/Auth in gantry", registry)
    assert (intent.task_type, intent.branch, intent.projects) == (
        TaskType.REVIEW,
        "feature/Auth",
        ["gantry"],
    )
    assert intent.complexity is Complexity.MEDIUM
    assert parse("review branch x-1 of core", registry).branch == "x-1"


@pytest.mark.parametrize(
    ("text", "complexity"),
    [
        ("fix a small typo in core", Complexity.LOW),
        ("fix typos in core", Complexity.LOW),
        ("implement a trivial helper in core", Complexity.LOW),
        ("implement a complex scheduler in core", Complexity.HIGH),
        ("refactor logging across modules in core", Complexity.HIGH),
        ("fix the minor bug that breaks the entire app in core", Complexity.HIGH),
        ("plan a simple rename", Complexity.LOW),
        ("debug the overhaul in gantry", Complexity.HIGH),
        ("implement retries in core", Complexity.MEDIUM),
    ],
)
def test_complexity_words(registry: Registry, text: str, complexity: Complexity) -> None:
    assert parse(text, registry).complexity is complexity


def test_complexity_words_in_project_names_do_not_count() -> None:
    reg = _registry("projects:\n  major-app: {path: /nonexistent/a}\n")
    assert parse("fix the login in major-app", reg).complexity is Complexity.MEDIUM


@pytest.mark.parametrize("override", [Complexity.HIGH, "high", "HIGH"])
def test_complexity_override(registry: Registry, override: Complexity | str) -> None:
    assert (
        parse("fix a small typo in core", registry, complexity=override).complexity
        is Complexity.HIGH
    )
    assert parse("format core", registry, complexity=override).complexity is Complexity.HIGH


def test_complexity_override_low_and_not_for_chores(registry: Registry) -> None:
    assert (
        parse("plan the overhaul", registry, complexity=Complexity.LOW).complexity is Complexity.LOW
    )
    assert parse("run tests in core", registry, complexity="high").complexity is None


def test_bad_complexity_override(registry: Registry) -> None:
    with pytest.raises(ParseError, match="unknown complexity"):
        parse("format core", registry, complexity="extreme")


# --- refusals and suggestions ----------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "please", "please.", "."])
def test_empty(registry: Registry, text: str) -> None:
    with pytest.raises(ParseError, match="empty task") as info:
        parse(text, registry)
    assert info.value.hint and "supported forms" in info.value.hint


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("merge core", "merge [P] SRC to|into DST [in P]"),
        ("mrege core develop to main", "merge [P] SRC to|into DST [in P]"),
        ("relase core 1.0", "release P VERSION"),
        ("run tests", "run tests in|across LIST"),
        ("run the tests", "run tests in|across LIST"),
        ("fix lint", "fix lint in LIST"),
        ("fix the bug", "fix TEXT in P"),
        ("implemnt caching", "implement TEXT in P"),
        ("clean branches in core", "clean stale branches in|across LIST"),
        ("updte core in gantry", "update DEP [to VERSION] in LIST"),
        ("review my branch", "review BRANCH in P"),
        ("tag core", "tag P VERSION"),
    ],
)
def test_closest_form(registry: Registry, text: str, form: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text, registry)
    error = info.value
    assert error.message == f'cannot understand "{normalize(text)}"; closest form: "{form}"'
    assert "\n" not in error.message and error.hint and "\n" not in error.hint
    assert all(f in error.hint for f in SUPPORTED_FORMS)
    assert error.exit_code == 2
    assert closest_form(text) == form


def test_long_text_is_shortened_in_the_message(registry: Registry) -> None:
    with pytest.raises(ParseError) as info:
        parse("hello " * 50, registry)
    assert len(info.value.message) < 160


def test_supported_forms_cover_every_kind() -> None:
    assert len(SUPPORTED_FORMS) == len(set(SUPPORTED_FORMS)) >= 15
    for verb in ["merge", "tag", "release", "run tests", "clean stale branches", "update", "plan"]:
        assert any(f.startswith(verb) for f in SUPPORTED_FORMS)


def test_intent_round_trips_as_json(registry: Registry) -> None:
    intent = parse("update core to 1.0 in gantry", registry)
    data = intent.model_dump(mode="json")
    assert data["kind"] == "update-dependency"
    assert Intent.model_validate(data) == intent


# --- fuzzing -------------------------------------------------------------------

VOCABULARY = sorted(
    {word for form in SUPPORTED_FORMS for word in form.replace("|", " ").split()}
    | {"core", "Core", "nebulus-core", "prime", "gantry", "tools.v2", "nebulus", "nope"}
    | {"and", ",", "all", "projects", "every", "project", "please", ".", "the", "to", "into"}
    | {"v0.2.0", "1.0", "banana", "develop", "main", "lint", "errors", "up", "stale", "small"}
    | {"major", "across", "for", "of", "as", "version", "requests", "acme-core", "-", "&", "\n"}
)


def _check(text: str, registry: Registry, complexity: str | None = None) -> None:
    try:
        intent = parse(text, registry, complexity=complexity)
    except (ParseError, ProjectLookupError, VersionError) as exc:
        assert isinstance(exc, OverlordError)
        assert exc.message and "\n" not in exc.message
        return
    assert isinstance(intent, Intent)
    assert all(p in ALL for p in intent.projects)
    assert len(intent.projects) == len(set(intent.projects))
    if intent.kind is IntentKind.MINION:
        assert intent.task_type is not None and intent.complexity is not None
    else:
        assert intent.task_type is None and intent.complexity is None


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_fuzz_random_text(registry: Registry, text: str) -> None:
    _check(text, registry)


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(st.sampled_from(VOCABULARY), max_size=12),
    complexity=st.sampled_from([None, "low", "medium", "high"]),
)
def test_fuzz_vocabulary(registry: Registry, words: list[str], complexity: str | None) -> None:
    _check(" ".join(words), registry, complexity)
