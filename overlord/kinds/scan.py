"""scan: one line of ``overlord status`` for a project, kept as the step's output (and
remembered); read-only, nothing to undo.

Asked as ``scan LIST``, ``status [of LIST]`` (no LIST: every project).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from overlord.core.intent import LIST, TO, Intent, everywhere, listed
from overlord.errors import StepFailed
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Form, Kind, Traits, Undo, empty, never, nothing

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("scan")


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    builder.add(NAME, project, f"scan the state of {project} (read-only)")


def _run(ctx: Context, undo: Undo) -> str:
    from overlord.adapters.git.scanner import scan_project

    row = scan_project(ctx.project.name, ctx.project, ctx.config.dispatch.stale_branch_days)
    if not row.ok:
        raise StepFailed(f"cannot scan {ctx.project.name}: {row.error}")
    state = "dirty" if row.dirty else "clean"
    parts = [f"{ctx.project.name}: {row.branch or 'detached'} {state}"]
    if row.upstream:
        parts.append(f"ahead {row.ahead} behind {row.behind} of {row.upstream}")
    parts.append(f"{len(row.stale_branches)} stale branch(es)")
    if row.old_unmerged:
        parts.append(f"{len(row.old_unmerged)} old unmerged")
    if row.tags:
        parts.append(f"latest tag {row.tags[0].name}")
    return ", ".join(parts)


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=True, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=Action(empty, _run, never, nothing),
    forms=(
        Form(rf"(?:scan|status)(?: (?:of|{TO}))? {LIST}", listed(NAME)),
        Form(r"(?:scan|status)", everywhere(NAME)),
    ),
    help=("scan LIST", "status [of LIST]"),
    order=60,
    add_steps=_add_steps,
)
