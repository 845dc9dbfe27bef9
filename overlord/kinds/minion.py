"""minion: code work (format, lint, feature, review, debugging, architecture, planning)
done by a minion on a new branch ``overlord/<plan>/<step>``; undo deletes that branch.

Asked as ``format|lint|fix lint in LIST``, ``review BRANCH in P``,
``implement|fix|debug|refactor TEXT in P``, ``add boilerplate|scaffold [TEXT] in P``,
``plan|design TEXT [for P]``: each maps to a task type and a complexity (words like
"small" or "major", else the type's default; ``--complexity`` overrides). Planning
routes the work to a model endpoint (``overlord.core.code_work``); the step's code, which
needs the broker and a sandbox, lives in ``overlord.minion_step`` and is loaded only
when a step runs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from overlord.core.intent import LIST, TO, WORD, FormContext, Intent, IntentKind, projects
from overlord.errors import OverlordError
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Form, Kind, Traits
from overlord.routing.tiers import Complexity, TaskType

if TYPE_CHECKING:
    from overlord.core.config import Config
    from overlord.core.plan import DispatchPlan
    from overlord.routing.endpoints import Known
NAME = ActionKind("minion")

#: Complexity of each task type when neither the text nor an override says otherwise.
DEFAULT_COMPLEXITY: dict[TaskType, Complexity] = {
    **dict.fromkeys([TaskType.FORMAT, TaskType.LINT, TaskType.BOILERPLATE], Complexity.LOW),
    **dict.fromkeys([TaskType.FEATURE, TaskType.REVIEW, TaskType.DEBUGGING], Complexity.MEDIUM),
    **dict.fromkeys([TaskType.ARCHITECTURE, TaskType.PLANNING], Complexity.HIGH),
}
_LOW_WORDS = re.compile(r"\b(?:simple|small|trivial|typos?|minor)\b", re.I)
_HIGH_WORDS = re.compile(r"\b(?:complex|large|major|across|redesign|overhaul|entire)\b", re.I)
_LIST_SUFFIX = re.compile(r"(?P<text>.+) (?:in|for|across) (?P<list>.+)", re.I)
_VERB_TASKS = {
    **dict.fromkeys(["implement", "refactor"], TaskType.FEATURE),
    **dict.fromkeys(["fix", "debug"], TaskType.DEBUGGING),
    **dict.fromkeys(["add boilerplate", "scaffold"], TaskType.BOILERPLATE),
    **{"plan": TaskType.PLANNING, "design": TaskType.ARCHITECTURE},
}


def _complexity(task: TaskType, words: str, ctx: FormContext) -> Complexity:
    if ctx.complexity is not None:
        return ctx.complexity
    if _HIGH_WORDS.search(words):
        return Complexity.HIGH
    if _LOW_WORDS.search(words):
        return Complexity.LOW
    return DEFAULT_COMPLEXITY[task]


def _code(ctx: FormContext, task: TaskType, names: list[str], words: str = "", **kw: Any) -> Intent:
    kw["complexity"] = _complexity(task, words, ctx)
    return Intent(kind=IntentKind(NAME), text=ctx.text, projects=names, task_type=task, **kw)


def _format_lint(m: re.Match[str], ctx: FormContext) -> Intent:
    verb = m["verb"].lower()
    task = TaskType.FORMAT if verb == "format" else TaskType.LINT
    return _code(ctx, task, projects(m["list"], ctx.registry), instruction=verb)


def _review(m: re.Match[str], ctx: FormContext) -> Intent:
    project = ctx.registry.resolve(m["project"])
    branch = m["branch"]
    return _code(ctx, TaskType.REVIEW, [project], instruction=f"review {branch}", branch=branch)


def _work(m: re.Match[str], ctx: FormContext) -> Intent:
    verb, text = m["verb"].lower(), m["text"] or ""
    names = projects(m["list"], ctx.registry)
    return _code(ctx, _VERB_TASKS[verb], names, text, instruction=f"{verb} {text}".strip())


def _plan_intent(m: re.Match[str], ctx: FormContext) -> Intent:
    """``plan|design TEXT [in|for LIST]``: the suffix counts only if it names projects."""
    verb = m["verb"].lower()
    text, names = m["text"], []
    suffix = _LIST_SUFFIX.fullmatch(text)
    if suffix:
        try:
            names = projects(suffix["list"], ctx.registry)
            text = suffix["text"]
        except OverlordError:
            names = []
    return _code(ctx, _VERB_TASKS[verb], names, text, instruction=f"{verb} {text}")


def _plan(intent: Intent, config: Config, tier: str | None, known: Known | None) -> DispatchPlan:
    from overlord.core.code_work import plan_code

    return plan_code(config, intent, tier=tier, known=known)


def _action() -> Action:
    from overlord.minion_step import ACTION

    return ACTION


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=True, affects_remote=False),
    estimate=120.0,
    action=_action,
    forms=(
        Form(
            rf"(?P<verb>format|lint|fix lint(?: errors| warnings)?) (?:{TO} )?{LIST}", _format_lint
        ),
        Form(
            rf"review (?:branch )?(?P<branch>{WORD}) (?:in|of|on|for) (?P<project>{WORD})", _review
        ),
        Form(rf"(?P<verb>implement|refactor|fix|debug) (?P<text>.+) (?:in|across) {LIST}", _work),
        Form(rf"(?P<verb>add boilerplate|scaffold)(?: (?P<text>.+))? (?:in|across) {LIST}", _work),
        Form(r"(?P<verb>plan|design) (?P<text>.+)", _plan_intent),
    ),
    help=(
        "format [in] LIST",
        "lint [in] LIST",
        "fix lint in LIST",
        "review BRANCH in P",
        "implement TEXT in P",
        "fix TEXT in P",
        "debug TEXT in P",
        "refactor TEXT in P",
        "add boilerplate [TEXT] in P",
        "scaffold [TEXT] in P",
        "plan TEXT [for P]",
        "design TEXT [for P]",
    ),
    # last: its forms take any text that starts with fix, implement, plan or design
    order=90,
    plan=_plan,
    routes_to_models=True,
)
