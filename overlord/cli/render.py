"""Showing plans: a table of steps, live progress, and the JSON document."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from overlord import defaults
from overlord.core.plan import DispatchPlan, StepState

_STYLE = {
    StepState.PENDING: "dim",
    StepState.RUNNING: "yellow",
    StepState.SUCCEEDED: "green",
    StepState.FAILED: "bold red",
    StepState.SKIPPED: "dim",
    StepState.UNDONE: "magenta",
    StepState.CANCELLED: "dim",
}


def slots(plan: DispatchPlan) -> int:
    """The ``max_concurrent_steps`` the plan was planned for."""
    return int(plan.options.get("max_concurrent_steps", defaults.MAX_CONCURRENT_STEPS))


def plan_document(plan: DispatchPlan) -> dict[str, Any]:
    doc = plan.model_dump(mode="json")
    doc["estimated_duration"] = plan.estimated_duration  # the critical path
    doc["expected_wall"] = round(plan.expected_wall(slots(plan)), 3)
    for step, dumped in zip(plan.steps, doc["steps"], strict=True):
        dumped["duration"] = step.duration
        dumped["expected"] = step.estimate
        dumped["expected_source"] = step.estimate_source
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
        f"{understood_as(plan)}"
        f"  state {plan.state.value} · {len(plan.steps)} step(s) · projects {', '.join(plan.projects) or '-'}\n"
        f"  blast radius: impact {scope.estimated_impact.value} · {', '.join(flags)}"
        f"\n  expected wall time {_seconds(plan.expected_wall(slots(plan)))}"
        f" on {slots(plan)} slot(s) (critical path {_seconds(plan.estimated_duration)})"
    )


def understood_as(plan: DispatchPlan) -> str:
    """The header lines of a translated plan: what the model read into the text."""
    t = plan.translation
    if t is None:
        return ""
    lines = "".join(f"    {line}\n" for line in t.lines)
    by = f"{t.endpoint} ({t.model})" if t.endpoint else "the planning model"
    approved = "approved by a person" if plan.person_approved else "runs once a person approves"
    return f"  understood as:\n{lines}  (translated by {by}; {approved})\n"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def expected_cell(plan: DispatchPlan, step_id: str) -> str:
    """A step's expected duration; ``*`` marks the kind's default (nothing remembered)."""
    step = plan.step(step_id)
    return _seconds(step.estimate) + ("*" if step.estimate_source != "remembered" else "")


def expected_legend(plan: DispatchPlan) -> str:
    sources = {s.estimate_source for s in plan.steps}
    parts = []
    if "remembered" in sources:
        parts.append("remembered from past runs of the kind on the project")
    if sources - {"remembered"}:
        parts.append("* the kind's default (nothing remembered yet)")
    return "expected: " + "; ".join(parts)


_COLUMNS = (
    "step",
    "kind",
    "project",
    "after",
    "tier/endpoint",
    "state",
    "expect",
    "time",
    "detail",
)


def steps_table(plan: DispatchPlan, *, outputs: bool = False) -> Table:
    """One line a step; only the detail column gives way on a narrow terminal."""
    rows = []
    for step in plan.steps:
        detail = step.error or (
            step.output.strip().splitlines()[-1]
            if outputs and step.output.strip()
            else step.description
        )
        rows.append(
            (
                step.id,
                step.kind.value,
                step.project or "-",
                ",".join(step.depends_on) or "-",
                step.endpoint or (step.tier.value if step.tier else "-"),
                step.state.value,
                expected_cell(plan, step.id),
                f"{step.duration:.1f}s" if step.duration is not None else "",
                detail[:100],
            )
        )
    # the tier/endpoint column only when some step uses a model
    shown = [i for i in range(len(_COLUMNS)) if i != 4 or any(r[4] != "-" for r in rows)]
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    for i in shown[:-1]:
        width = max([len(_COLUMNS[i]), *(len(r[i]) for r in rows)])
        table.add_column(_COLUMNS[i], no_wrap=True, min_width=width)
    table.add_column(_COLUMNS[-1], ratio=1)  # takes what is left; its text is cut, not wrapped
    for row, step in zip(rows, plan.steps, strict=True):
        cells = [Text(c) for c in row]
        cells[8] = Text(row[8], no_wrap=True, overflow="ellipsis")
        cells[5] = Text(row[5], style=_STYLE[step.state])
        table.add_row(*(cells[i] for i in shown))
    return table


def outcome_line(plan: DispatchPlan) -> str:
    text = f"plan {plan.id} {plan.state.value}"
    if plan.error:
        text += f": {plan.error}"
    if plan.undone:
        text += f" (undone: {', '.join(plan.undone)})"
    return text
