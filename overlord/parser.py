"""The task parser (SPEC §3): a short instruction in, an ``Intent`` out.

A table of (regex, builder): the normalised text is matched against each form in turn and
the first match builds the ``Intent``; text that matches none is refused with the closest form.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field

from overlord.errors import (
    NoFormMatches,
    OverlordError,
    ParseError,
    ProjectLookupError,
    VersionError,
)
from overlord.registry import Registry
from overlord.routing.tiers import Complexity, TaskType


class IntentKind(StrEnum):
    MERGE = "merge"
    TAG = "tag"
    RELEASE = "release"
    RUN_TESTS = "run-tests"
    CLEAN_STALE_BRANCHES = "clean-stale-branches"
    UPDATE_DEPENDENCY = "update-dependency"
    SCAN = "scan"
    CODE = "code"


#: Complexity of each task type when neither the text nor an override says otherwise.
DEFAULT_COMPLEXITY: dict[TaskType, Complexity] = {
    **dict.fromkeys([TaskType.FORMAT, TaskType.LINT, TaskType.BOILERPLATE], Complexity.LOW),
    **dict.fromkeys([TaskType.FEATURE, TaskType.REVIEW, TaskType.DEBUGGING], Complexity.MEDIUM),
    **dict.fromkeys([TaskType.ARCHITECTURE, TaskType.PLANNING], Complexity.HIGH),
}

#: Human-readable forms, for help text and for "closest form" suggestions.
SUPPORTED_FORMS: list[str] = (
    "merge [P] SRC to|into DST [in P]; tag P VERSION; release P VERSION; "
    "run tests in|across LIST; test LIST; clean stale branches in|across LIST; "
    "scan LIST; status [of LIST]; "
    "update DEP [to VERSION] in LIST; format [in] LIST; lint [in] LIST; fix lint in LIST; "
    "review BRANCH in P; implement TEXT in P; fix TEXT in P; debug TEXT in P; "
    "refactor TEXT in P; add boilerplate [TEXT] in P; scaffold [TEXT] in P; "
    "plan TEXT [for P]; design TEXT [for P]"
).split("; ")
LIST_HELP = "LIST is P, P and Q, P, Q and R, or all projects"


class Intent(BaseModel):
    """What an instruction asks for, with project names resolved."""

    model_config = ConfigDict(extra="forbid")

    kind: IntentKind
    text: str
    projects: list[str] = Field(default_factory=list)
    source: str | None = None
    target: str | None = None
    version: str | None = None
    dependency: str | None = None
    task_type: TaskType | None = None
    complexity: Complexity | None = None
    instruction: str | None = None
    branch: str | None = None

    @property
    def project(self) -> str | None:
        """The first (for single-project forms: the only) project."""
        return self.projects[0] if self.projects else None


@dataclass(frozen=True)
class _Context:
    registry: Registry
    text: str
    complexity: Complexity | None


_Builder = Callable[[re.Match[str], _Context], Intent]

_TO = r"(?:in|across|for|on)"
_ALL = re.compile(r"all|all (?:the )?(?:projects|repos)|every project|everything", re.I)
_LOW_WORDS = re.compile(r"\b(?:simple|small|trivial|typos?|minor)\b", re.I)
_HIGH_WORDS = re.compile(r"\b(?:complex|large|major|across|redesign|overhaul|entire)\b", re.I)
_DIST_NAME = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9]", re.I)
_LIST_SUFFIX = re.compile(r"(?P<text>.+) (?:in|for|across) (?P<list>.+)", re.I)


# --- pieces ------------------------------------------------------------------


def _version(raw: str) -> str:
    try:
        return str(Version(raw))
    except InvalidVersion:
        raise VersionError(
            f"invalid version {raw!r}: not a PEP 440 version",
            "use a version like 1.2.3, v1.2.3 or 1.2.3rc1",
        ) from None


def _projects(text: str, registry: Registry) -> list[str]:
    """Resolve a LIST: ``P``, ``P and Q``, ``P, Q, and R`` or ``all projects``."""
    if _ALL.fullmatch(text):
        if not registry.names:
            raise ParseError("no projects are configured", "add projects to the config")
        return list(registry.names)
    tokens = [t for t in re.split(r"[ ,]+", text) if t and t.lower() not in ("and", "&")]
    if not tokens:
        raise ParseError(f"no project named in {text!r}", LIST_HELP)
    return registry.resolve_all(tokens)


def _dependency(raw: str, registry: Registry) -> str:
    """The project DEP names (by name or distribution), else the raw distribution name.

    Only whole-name matches count ("core" finds ``nebulus-core``), never a bare prefix,
    so an outside package like ``requests`` is not mistaken for ``requests-helper``.
    """
    if not _DIST_NAME.fullmatch(raw):
        raise ParseError(f"{raw!r} is not a package name", "e.g. update requests to 2.32 in app")
    wanted = canonicalize_name(raw)
    for name in registry.names:
        dist = registry.config.projects[name].distribution
        if wanted in (canonicalize_name(name), canonicalize_name(dist)):
            return name
    try:
        name = registry.resolve(raw)
    except ProjectLookupError:
        return raw
    return name if canonicalize_name(name).endswith("-" + wanted) else raw


def _complexity(task: TaskType, words: str, ctx: _Context) -> Complexity:
    if ctx.complexity is not None:
        return ctx.complexity
    if _HIGH_WORDS.search(words):
        return Complexity.HIGH
    if _LOW_WORDS.search(words):
        return Complexity.LOW
    return DEFAULT_COMPLEXITY[task]


def _code(ctx: _Context, task: TaskType, projects: list[str], words: str = "", **kw: Any) -> Intent:
    kw["complexity"] = _complexity(task, words, ctx)
    return Intent(kind=IntentKind.CODE, text=ctx.text, projects=projects, task_type=task, **kw)


# --- builders ----------------------------------------------------------------


def _merge(m: re.Match[str], ctx: _Context) -> Intent:
    before, after = m["before"], m["after"]
    if before and after:
        raise ParseError("name the project of a merge once", 'e.g. "merge core develop to main"')
    if not before and not after:
        raise ParseError("name the project of the merge", 'e.g. "merge develop to main in core"')
    if m["src"] == m["dst"]:
        raise ParseError(f"cannot merge {m['src']!r} into itself", "name two different branches")
    project = ctx.registry.resolve(before or after)
    return Intent(
        kind=IntentKind.MERGE, text=ctx.text, projects=[project], source=m["src"], target=m["dst"]
    )


def _versioned(kind: IntentKind) -> _Builder:
    def build(m: re.Match[str], ctx: _Context) -> Intent:
        project = ctx.registry.resolve(m["project"])
        return Intent(kind=kind, text=ctx.text, projects=[project], version=_version(m["version"]))

    return build


def _listed(kind: IntentKind) -> _Builder:
    def build(m: re.Match[str], ctx: _Context) -> Intent:
        return Intent(kind=kind, text=ctx.text, projects=_projects(m["list"], ctx.registry))

    return build


def _all(kind: IntentKind) -> _Builder:
    def build(m: re.Match[str], ctx: _Context) -> Intent:
        return Intent(kind=kind, text=ctx.text, projects=_projects("all", ctx.registry))

    return build


def _update(m: re.Match[str], ctx: _Context) -> Intent:
    dependency = _dependency(m["dep"], ctx.registry)
    version = _version(m["version"]) if m["version"] else None
    projects = _projects(m["list"], ctx.registry)
    if dependency in projects:
        if not _ALL.fullmatch(m["list"]):
            raise ParseError(f"{dependency} cannot depend on itself", "name its dependents")
        projects.remove(dependency)
    if not projects:
        raise ParseError(f"no project left to update {dependency} in", "name its dependents")
    kind = IntentKind.UPDATE_DEPENDENCY
    return Intent(
        kind=kind, text=ctx.text, projects=projects, dependency=dependency, version=version
    )


def _format_lint(m: re.Match[str], ctx: _Context) -> Intent:
    verb = m["verb"].lower()
    task = TaskType.FORMAT if verb == "format" else TaskType.LINT
    return _code(ctx, task, _projects(m["list"], ctx.registry), instruction=verb)


def _review(m: re.Match[str], ctx: _Context) -> Intent:
    project = ctx.registry.resolve(m["project"])
    branch = m["branch"]
    return _code(ctx, TaskType.REVIEW, [project], instruction=f"review {branch}", branch=branch)


_VERB_TASKS = {
    **dict.fromkeys(["implement", "refactor"], TaskType.FEATURE),
    **dict.fromkeys(["fix", "debug"], TaskType.DEBUGGING),
    **dict.fromkeys(["add boilerplate", "scaffold"], TaskType.BOILERPLATE),
    **{"plan": TaskType.PLANNING, "design": TaskType.ARCHITECTURE},
}


def _work(m: re.Match[str], ctx: _Context) -> Intent:
    verb, text = m["verb"].lower(), m["text"] or ""
    projects = _projects(m["list"], ctx.registry)
    return _code(ctx, _VERB_TASKS[verb], projects, text, instruction=f"{verb} {text}".strip())


def _plan(m: re.Match[str], ctx: _Context) -> Intent:
    """``plan|design TEXT [in|for LIST]``: the suffix counts only if it names projects."""
    verb = m["verb"].lower()
    text, projects = m["text"], []
    suffix = _LIST_SUFFIX.fullmatch(text)
    if suffix:
        try:
            projects = _projects(suffix["list"], ctx.registry)
            text = suffix["text"]
        except OverlordError:
            projects = []
    return _code(ctx, _VERB_TASKS[verb], projects, text, instruction=f"{verb} {text}")


_N = r"[^ ,]+"  # a project or branch name: no spaces, no commas
_V = r"(?P<version>[^ ]+)"
_L = r"(?P<list>.+)"
_FORMS: list[tuple[str, _Builder]] = [
    (
        rf"merge (?:(?P<before>{_N}) )?(?P<src>{_N}) (?:to|into) (?P<dst>{_N})"
        rf"(?: (?:in|of|for) (?P<after>{_N}))?",
        _merge,
    ),
    (rf"tag (?P<project>{_N}) (?:as )?{_V}", _versioned(IntentKind.TAG)),
    (rf"release (?P<project>{_N}) (?:version |as )?{_V}", _versioned(IntentKind.RELEASE)),
    (rf"(?:run (?:the )?tests?|test) (?:{_TO} )?{_L}", _listed(IntentKind.RUN_TESTS)),
    (rf"clean(?: up)? stale branches (?:{_TO} )?{_L}", _listed(IntentKind.CLEAN_STALE_BRANCHES)),
    (rf"(?:scan|status)(?: (?:of|{_TO}))? {_L}", _listed(IntentKind.SCAN)),
    (r"(?:scan|status)", _all(IntentKind.SCAN)),
    (rf"update (?P<dep>{_N})(?: to {_V})? {_TO} {_L}", _update),
    (rf"(?P<verb>format|lint|fix lint(?: errors| warnings)?) (?:{_TO} )?{_L}", _format_lint),
    (rf"review (?:branch )?(?P<branch>{_N}) (?:in|of|on|for) (?P<project>{_N})", _review),
    (rf"(?P<verb>implement|refactor|fix|debug) (?P<text>.+) (?:in|across) {_L}", _work),
    (rf"(?P<verb>add boilerplate|scaffold)(?: (?P<text>.+))? (?:in|across) {_L}", _work),
    (r"(?P<verb>plan|design) (?P<text>.+)", _plan),
]
_TABLE = [(re.compile(pattern, re.I), build) for pattern, build in _FORMS]


# --- entry point -------------------------------------------------------------


def normalize(text: str) -> str:
    """Collapse whitespace, drop a leading "please" and a trailing period."""
    text = re.sub(r"[ .]+$", "", " ".join(text.split()))
    return re.sub(r"^please(?:[ ,.]+|$)", "", text, flags=re.I)


def _form_key(form: str) -> str:
    """The literal leading words of a form ("fix lint in LIST" → "fix lint")."""
    words: list[str] = []
    for word in form.split():
        if not word.islower() or "[" in word or "|" in word:
            break
        words.append(word)
    while words and words[-1] in ("in", "to", "for", "across"):
        words.pop()
    return " ".join(words)


def closest_form(text: str) -> str:
    """The supported form whose leading words are closest to the text's."""
    words = normalize(text).lower().split()

    def score(form: str) -> tuple[float, int]:
        key = _form_key(form)
        n = len(key.split())
        ratio = difflib.SequenceMatcher(None, key, " ".join(words[:n])).ratio()
        return ratio, n

    return max(SUPPORTED_FORMS, key=score)


def _forms_hint() -> str:
    return f"supported forms: {'; '.join(SUPPORTED_FORMS)} ({LIST_HELP})"


def parse(text: str, registry: Registry, complexity: Complexity | str | None = None) -> Intent:
    """Turn an instruction into an ``Intent``.

    Raises ``ParseError`` (no form matches, or a form's parts do not fit),
    ``ProjectLookupError`` (unknown or ambiguous project) or ``VersionError``.
    ``complexity`` overrides the complexity of code work.
    """
    if complexity is not None and str(complexity).lower() not in list(Complexity):
        raise ParseError(f"unknown complexity {complexity!r}", "use low, medium or high")
    override = Complexity(str(complexity).lower()) if complexity is not None else None
    normal = normalize(text)
    if not normal:
        raise ParseError("empty task: say what to do", _forms_hint())
    ctx = _Context(registry=registry, text=text.strip(), complexity=override)
    for pattern, build in _TABLE:
        match = pattern.fullmatch(normal)
        if match:
            return build(match, ctx)
    shown = normal if len(normal) <= 80 else normal[:77] + "..."
    raise NoFormMatches(
        f'cannot understand "{shown}"; closest form: "{closest_form(normal)}"', _forms_hint()
    )


def split_instructions(text: str) -> list[str]:
    """The instructions of a text: pieces separated by ``;`` or new lines (blank ones dropped)."""
    return [piece.strip() for piece in re.split(r"[;\n\r]+", text) if piece.strip()]


def parse_lines(
    lines: list[str], registry: Registry, complexity: Complexity | str | None = None
) -> list[Intent]:
    """Each line parsed on its own; the first refusal names its line when there are several."""
    intents: list[Intent] = []
    for number, line in enumerate(lines, 1):
        try:
            intents.append(parse(line, registry, complexity))
        except OverlordError as exc:
            if len(lines) > 1:
                exc.message = f"line {number} ({line!r}): {exc.message}"
                exc.args = (exc.message,)
            raise
    if not intents:
        raise ParseError("empty task: say what to do", _forms_hint())
    return intents


def parse_all(
    text: str, registry: Registry, complexity: Complexity | str | None = None
) -> list[Intent]:
    """Every instruction of ``text`` (see ``split_instructions``) as an ``Intent``.

    One text with several supported instructions makes several intents (one plan, see
    ``planner.plan_for_all``). Raises like ``parse``; ``NoFormMatches`` when any piece
    matches no form, so the whole text can go to translation.
    """
    return parse_lines(split_instructions(text), registry, complexity)
