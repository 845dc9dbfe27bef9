"""The presentation of the dispatch use case (``overlord.dispatching``) shared by
dispatch, release and the plan commands: the plan shown, the person's prompt, live
progress, the outcome and its exit code."""

from __future__ import annotations

import sys

from rich.live import Live

from overlord import dispatching
from overlord.cli.common import console, print_json, rich_console, say
from overlord.cli.render import (
    expected_legend,
    outcome_line,
    plan_document,
    plan_header,
    steps_table,
)
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, PlanState, StepState
from overlord.dispatching import PUSH_QUESTION
from overlord.errors import EXIT_FAILED, EXIT_OK, EXIT_PENDING


def interactive(json_out: bool = False, detach: bool = False) -> bool:
    """A person is at a terminal who can answer a question."""
    return sys.stdin.isatty() and sys.stdout.isatty() and not json_out and not detach


def ask(question: str) -> bool:
    from rich.prompt import Confirm

    return Confirm.ask(question, console=rich_console(console), default=False)


class Prompt:
    """The person at the terminal (``dispatching.Person``)."""

    def answers(self, question: str) -> bool:
        return ask(question)


def person(json_out: bool = False, detach: bool = False) -> Prompt | None:
    """The person who can answer now, if any."""
    return Prompt() if interactive(json_out, detach) else None


class Progress:
    """Follows a plan: a live table in a terminal, one line per change elsewhere."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live: Live | None = None
        self.seen: dict[str, str] = {}

    def __enter__(self) -> Progress:
        if not self.quiet and console.is_terminal:
            self.live = Live(console=rich_console(console), refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, plan: DispatchPlan) -> None:
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(steps_table(plan))
            return
        changed = [s for s in plan.steps if self.seen.get(s.id) != s.state.value]
        # undone steps last, in the order the rollback undid them: latest completed first
        changed.sort(
            key=lambda s: (1, -(s.finished_seq or 0)) if s.state is StepState.UNDONE else (0, 0)
        )
        for step in changed:
            self.seen[step.id] = step.state.value
            if step.state is not StepState.PENDING:
                detail = f" ({step.error})" if step.error else ""
                say(
                    f"  {step.id} {step.kind.value} {step.project or ''}: {step.state.value}{detail}"
                )

    def notice(self, line: str) -> None:
        """Something the follower did for the plan (a lost worker's step re-sent)."""
        if self.live is not None:
            self.live.console.print(line, markup=False, highlight=False)
        elif not self.quiet:
            say(f"  {line}")


def exit_code(plan: DispatchPlan) -> int:
    if plan.state in (PlanState.SUCCEEDED, PlanState.REJECTED, PlanState.CANCELLED):
        return EXIT_OK  # done as a person decided
    if plan.state.waiting:
        return EXIT_PENDING
    if plan.state in (PlanState.QUEUED, PlanState.RUNNING):
        return EXIT_OK  # detached: enqueued
    return EXIT_FAILED


def settle_push(
    config: Config, plan: DispatchPlan, *, detach: bool, json_out: bool
) -> DispatchPlan:
    """A waiting push: asked at the terminal, else said how a person approves it."""
    plan = dispatching.settle_push(
        config,
        plan,
        person=person(json_out, detach),
        following=lambda: Progress(quiet=json_out),
    )
    _push_waits(plan, json_out)
    return plan


def _push_waits(plan: DispatchPlan, json_out: bool) -> None:
    if plan.state is PlanState.AWAITING_PUSH and not json_out:
        say(f"{PUSH_QUESTION} Waiting for a person: `overlord approve {plan.id}`", err=True)


def report(plan: DispatchPlan, json_out: bool) -> int:
    code = exit_code(plan)
    if json_out:
        print_json(plan_document(plan))
        return code
    if not console.is_terminal:
        console.print(steps_table(plan, outputs=True))
    say(outcome_line(plan))
    for note in plan.notes:
        say(f"  {note}")
    if plan.state.waiting:
        say(f"approve with: overlord approve {plan.id}   (or reject: overlord reject {plan.id})")
    elif plan.state in (PlanState.QUEUED, PlanState.RUNNING):
        say(f"enqueued; follow with: overlord plans show {plan.id}")
    elif plan.state is PlanState.FAILED:
        say(f"inspect with: overlord plans show {plan.id}")
    return code


def execute_and_report(
    config: Config,
    plan: DispatchPlan,
    *,
    dry_run: bool = False,
    yes: bool = False,
    detach: bool = False,
    json_out: bool = False,
) -> int:
    """Prepare (preflight, approval), show, then dispatch; returns the exit code."""
    verdict = dispatching.prepare(config, plan, yes=yes)
    if config.minions.backend == "process" and ActionKind.MINION in plan.kinds:
        from overlord.adapters.containers.process import UNSANDBOXED

        say(f"warning: {UNSANDBOXED}", err=True)
    if not json_out:
        say(plan_header(plan))
        console.print(steps_table(plan))
        say(expected_legend(plan))
        say(f"autonomy: {verdict.decision.value} — {verdict.reason}")
    if dry_run:
        if json_out:
            print_json({**plan_document(plan), "verdict": verdict.as_dict(), "dry_run": True})
        else:
            say("dry run: nothing changed")
        return EXIT_OK
    plan = dispatching.dispatch(
        config,
        plan,
        verdict,
        person=person(json_out, detach),
        detach=detach,
        following=lambda: Progress(quiet=json_out),
    )
    if plan.state is PlanState.PENDING:
        if json_out:
            print_json(plan_document(plan))
        else:
            say(
                f"plan {plan.id} saved as pending ({plan.approval_reason}); "
                f"approve it with `overlord approve {plan.id}`",
                err=True,
            )
        return EXIT_PENDING
    _push_waits(plan, json_out)
    return report(plan, json_out)
