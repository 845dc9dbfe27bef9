"""clean-stale-branches: delete merged local branches older than ``stale_branch_days``
(never the current one, ``main``, ``master`` or ``develop``); undo recreates each at its
recorded commit.

Asked as ``clean stale branches in|across LIST``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from overlord import defaults
from overlord.core.intent import LIST, TO, Intent, listed
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Form, Kind, Traits, Undo

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("clean-stale-branches")


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    days = builder.config.dispatch.stale_branch_days
    builder.add(
        NAME, project, f"delete merged branches older than {days} days in {project}", days=days
    )


def _prepare(ctx: Context) -> Undo:
    from overlord.adapters.git.scanner import stale_branches

    git = ctx.git
    mains = [b for b in ("main", "master", "develop") if git.branch_exists(b)]
    days = int(ctx.params.get("days", ctx.config.dispatch.stale_branch_days))
    current = git.current_branch()
    stale = stale_branches(git, mains, days, current=current)
    return {"branches": {b.name: b.sha for b in stale if b.name != current}}


def _run(ctx: Context, undo: Undo) -> str:
    git = ctx.git
    deleted = []
    for name, sha in undo["branches"].items():
        if name in defaults.PROTECTED_BRANCHES or name == git.current_branch():
            continue
        if git.rev(f"refs/heads/{name}") == sha:
            git.delete_branch(name)
            deleted.append(name)
    return f"deleted {len(deleted)} stale branch(es): {', '.join(deleted) or 'none'}"


def _done(ctx: Context, undo: Undo) -> bool:
    return all(not ctx.git.branch_exists(name) for name in undo["branches"])


def _undo(ctx: Context, undo: Undo) -> str:
    git = ctx.git
    restored = []
    for name, sha in undo["branches"].items():
        if not git.branch_exists(name):
            git.create_branch(name, sha)
            restored.append(name)
    return f"recreated {', '.join(restored) or 'nothing'}"


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=True, reversible=True, affects_remote=False),
    estimate=1.0,
    action=Action(_prepare, _run, _done, _undo),
    forms=(Form(rf"clean(?: up)? stale branches (?:{TO} )?{LIST}", listed(NAME)),),
    help=("clean stale branches in|across LIST",),
    order=50,
    add_steps=_add_steps,
)
