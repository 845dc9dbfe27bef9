"""Showing plans: a table of steps, live progress, and the JSON document."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from overlord.plan import DispatchPlan, StepState

_STYLE = {
    StepState.PENDING: "dim",
    StepState.RUNNING: "yellow",
    StepState.SUCCEEDED: "green",
    StepState.FAILED: "bold red",
    StepState.SKIPPED: "dim",
    StepState.UNDONE: "magenta",
    StepState.CANCELLED: "dim",
}


def plan_document(plan: DispatchPlan) -> dict[str, Any]:
    doc = plan.model_dump(mode="json")
    doc["estimated_duration"] = plan.estimated_duration
    for step, dumped in zip(plan.steps, doc["steps"], strict=True):
        dumped["duration"] = step.duration
    return doc


def plan_header(plan: DispatchPlan) -> str:
    scope = plan.scope
    flags = [
        "read-only" if scope.read_only else "writes",
        "destructive" if scope.destructive else "non-destructive",
        "reversible" if scope.reversible else "irreversible",
        "affects remote" if scope.affects_remote else "local",
    ]
    return (
        f"plan {plan.id}: {plan.task}\n"
        f"  state {plan.state.value} · {len(plan.steps)} step(s) · projects {', '.join(plan.projects) or '-'}\n"
        f"  blast radius: impact {scope.estimated_impact.value} · {', '.join(flags)}"
        f" · est. {plan.estimated_duration:.0f}s"
    )


def steps_table(plan: DispatchPlan, *, outputs: bool = False) -> Table:
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in ("step", "kind", "project", "after", "tier/endpoint", "state", "time", "detail"):
        table.add_column(column)
    for step in plan.steps:
        duration = f"{step.duration:.1f}s" if step.duration is not None else ""
        route = step.endpoint or (step.tier.value if step.tier else "-")
        detail = step.error or (
            step.output.strip().splitlines()[-1]
            if outputs and step.output.strip()
            else step.description
        )
        table.add_row(
            step.id,
            step.kind.value,
            step.project or "-",
            ",".join(step.depends_on) or "-",
            route,
            Text(step.state.value, style=_STYLE[step.state]),
            duration,
            Text(detail[:100]),
        )
    return table


def outcome_line(plan: DispatchPlan) -> str:
    text = f"plan {plan.id} {plan.state.value}"
    if plan.error:
        text += f": {plan.error}"
    if plan.undone:
        text += f" (undone: {', '.join(plan.undone)})"
    return text
