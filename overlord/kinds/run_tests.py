"""run-tests: the project's test command in its tree, on the step's branch (read-only:
nothing to undo).

Asked as ``run tests in|across LIST`` or ``test LIST``. The command runs through
``overlord.adapters.commands.proc`` (its own session, a bounded output tail, its whole process group
stopped on timeout, on cancel, and when the worker dies).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from overlord.adapters.commands import proc
from overlord.adapters.git.checkout import head_name, on_branch, require_branch, require_clean
from overlord.core.intent import LIST, TO, Intent, listed
from overlord.core.secrets import scrubbed_env
from overlord.errors import StepFailed
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Form, Kind, Traits, never, nothing

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("run-tests")


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    builder.add(NAME, project, f"run the tests of {project}")


def tests_prepare(ctx: Context) -> dict[str, Any]:
    branch = ctx.params.get("branch")
    if branch and branch != ctx.git.current_branch():
        require_clean(ctx.git)
        require_branch(ctx.git, branch)
    return {}


def tests_run(ctx: Context, undo: dict[str, Any]) -> str:
    argv = shlex.split(ctx.project.test_command)
    current = head_name(ctx.git)
    with on_branch(ctx.git, ctx.params.get("branch") or current, current=current):
        done = proc.run(
            argv,
            cwd=ctx.project.path,
            timeout=ctx.step.timeout,
            env=scrubbed_env(ctx.config),  # no secret reaches a project's command
            cancelled=_plan_stopped(ctx),
        )
    if done.cancelled:
        raise StepFailed(
            f"tests of {ctx.project.name} stopped: the plan stopped running "
            "(another step failed, or it was cancelled)",
            output=done.output,
        )
    if not done.ok:
        lines = [line for line in done.output.strip().splitlines() if line.strip()]
        last = lines[-1][:200] if lines else "no output"
        raise StepFailed(
            f"tests of {ctx.project.name} failed ({done.reason}): {last}", output=done.output
        )
    return done.output


def _plan_stopped(ctx: Context) -> Callable[[], bool]:
    """Whether the step's plan stopped running (cancelled, failed elsewhere); a database
    hiccup counts as not stopped (the timeout still holds)."""
    from overlord.core.plan import PlanState
    from overlord.wiring import plan_store

    store = plan_store(ctx.config)

    def stopped() -> bool:
        try:
            return store.state(ctx.plan_id) is not PlanState.RUNNING
        except Exception:
            return False

    return stopped


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=True, destructive=False, reversible=True, affects_remote=False),
    estimate=10.0,
    action=Action(tests_prepare, tests_run, never, nothing),
    forms=(Form(rf"(?:run (?:the )?tests?|test) (?:{TO} )?{LIST}", listed(NAME)),),
    help=("run tests in|across LIST", "test LIST"),
    order=40,
    add_steps=_add_steps,
)
