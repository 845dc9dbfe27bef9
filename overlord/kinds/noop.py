"""noop: does nothing (sleeps ``seconds``, fails when ``fail`` is set); benchmarks and
tests build plans of it. Needs no approval anywhere.
"""

from __future__ import annotations

import time

from overlord.errors import StepFailed
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Kind, Traits, Undo, empty, never, nothing

NAME = ActionKind("noop")


def _run(ctx: Context, undo: Undo) -> str:
    seconds = float(ctx.params.get("seconds", 0))
    if seconds:
        time.sleep(seconds)
    if ctx.params.get("fail"):
        raise StepFailed(f"step {ctx.step.id} failed on purpose")
    return "ok"


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=True, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=Action(empty, _run, never, nothing),
    planned_by="benchmarks and tests build noop plans directly (no instruction asks for one)",
    pre_approvable=False,
    always_approved=True,
)
