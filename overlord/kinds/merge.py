"""merge: ``SRC`` into ``DST`` with a merge commit (no fast-forward), refusing a dirty
tree; undo puts ``DST`` back at its recorded commit (``commit_step.rewind``).

Asked as ``merge [P] SRC to|into DST [in P]``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from overlord.adapters.git.checkout import on_branch, require_branch, require_clean
from overlord.core.intent import WORD, FormContext, Intent, IntentKind
from overlord.errors import ParseError
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Form, Kind, Traits, Undo
from overlord.kinds.commit_step import rewind

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("merge")


def _intent(m: re.Match[str], ctx: FormContext) -> Intent:
    before, after = m["before"], m["after"]
    if before and after:
        raise ParseError("name the project of a merge once", 'e.g. "merge core develop to main"')
    if not before and not after:
        raise ParseError("name the project of the merge", 'e.g. "merge develop to main in core"')
    if m["src"] == m["dst"]:
        raise ParseError(f"cannot merge {m['src']!r} into itself", "name two different branches")
    project = ctx.registry.resolve(before or after)
    return Intent(
        kind=IntentKind(NAME), text=ctx.text, projects=[project], source=m["src"], target=m["dst"]
    )


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    assert intent.source and intent.target
    builder.add(
        NAME,
        project,
        f"merge {intent.source} into {intent.target} in {project} (no fast-forward)",
        source=intent.source,
        target=intent.target,
        branches=[intent.source, intent.target],
    )


def _prepare(ctx: Context) -> Undo:
    git = ctx.git
    require_clean(git)
    source, target = ctx.params["source"], ctx.params["target"]
    return {
        "branch": target,
        "before": require_branch(git, target),
        "source_sha": require_branch(git, source),
        "message": f"Merge branch '{source}' into {target}",
    }


def _run(ctx: Context, undo: Undo) -> str:
    git = ctx.git
    with on_branch(git, undo["branch"]):
        new = git.merge_no_ff(ctx.params["source"], undo["message"])
    undo["after"] = new
    return f"merged {ctx.params['source']} into {undo['branch']}: {new[:10]}"


def _done(ctx: Context, undo: Undo) -> bool:
    git = ctx.git
    tip = git.branch_sha(undo["branch"])
    if tip is None or tip == undo["before"]:
        return False
    parents = git.run("rev-list", "--parents", "-n", "1", tip).split()[1:]
    return parents == [undo["before"], undo["source_sha"]]


def _undo(ctx: Context, undo: Undo) -> str:
    return rewind(ctx, undo, _done)


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=Action(_prepare, _run, _done, _undo),
    forms=(
        Form(
            rf"merge (?:(?P<before>{WORD}) )?(?P<src>{WORD}) (?:to|into) (?P<dst>{WORD})"
            rf"(?: (?:in|of|for) (?P<after>{WORD}))?",
            _intent,
        ),
    ),
    help=("merge [P] SRC to|into DST [in P]",),
    order=10,
    add_steps=_add_steps,
)
