"""Plan → Celery canvas, explicitly and flat.

A plan's DAG is cut into stages at the steps every other step waits for or waits on (a
release's core steps, a report at the end): stages run one after another, and a stage
between two such steps is its independent lines of work — one chain each, never packed
together — as the header of a chord whose body is the rest of the plan. So A → {B, C} →
D → {E, F} → G keeps B ∥ C and E ∥ F, and a chord's header holds only chains of steps.

How many steps run at once is not the canvas's business: every line is sent at once,
longest expected first, and ``max_concurrent_steps`` slots (the worker's concurrency in
embedded mode, the plan's lease semaphore across workers, ``tasks.slots``) take the next
ready step the moment one frees. Each step carries a broker priority from its expected
remaining path (its line's rest), so a slot prefers the step that ends the plan latest.
Steps on one repository always share a line, so no two of them run at once. Every step
signature carries the plan's error callback, ``overlord.plan_failed``, which starts the
rollback once per plan.

The push steps of a plan are a separate phase (``compile_push``), enqueued only after a
person approved the push.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from overlord import defaults
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, StepState
from overlord.tasks.names import plan_task_name, step_name, step_task_name, undo_name

FINISH = "overlord.finish"
FAILED = "overlord.plan_failed"
#: Broker priorities 0 (first) .. PRIORITIES - 1; the app's ``priority_steps`` match.
PRIORITIES = defaults.STEP_PRIORITIES

#: One stage: its lines (chains of step ids) that may run in parallel.
Stage = list[list[str]]


@dataclass
class Layout:
    """The shape of a compiled plan, as step ids (what the canvas is built from)."""

    stages: list[Stage] = field(default_factory=list)

    @property
    def lines(self) -> list[list[str]]:
        return [line for stage in self.stages for line in stage]


def layout(plan: DispatchPlan, step_ids: list[str]) -> Layout:
    """The stages of the sub-DAG of ``step_ids``, each line longest expected first."""
    wanted = set(step_ids)
    todo = [s for s in plan.order() if s in wanted]
    deps = {s: set(plan.step(s).depends_on) & wanted for s in todo}
    before = _ancestors(todo, deps)
    after: dict[str, set[str]] = {s: set() for s in todo}
    for s in todo:
        for a in before[s]:
            after[a].add(s)
    # a cut: every other step is before or after it (all cuts are ordered among themselves)
    cuts = [s for s in todo if len(before[s]) + len(after[s]) == len(todo) - 1]
    segments: list[list[str]] = [[] for _ in range(len(cuts) + 1)]
    for s in todo:
        if s not in cuts:
            segments[sum(1 for c in cuts if c in before[s])].append(s)
    out = Layout()
    for i, segment in enumerate(segments):
        if segment:
            lines = _components(segment, deps, plan)
            lines.sort(key=lambda ln: -sum(plan.step(s).estimate for s in ln))
            out.stages.append(lines)
        if i < len(cuts):
            out.stages.append([[cuts[i]]])
    # consecutive one-line stages are one line
    merged: list[Stage] = []
    for stage in out.stages:
        if merged and len(stage) == 1 and len(merged[-1]) == 1:
            merged[-1][0].extend(stage[0])
        else:
            merged.append(stage)
    out.stages = merged
    return out


def _ancestors(todo: list[str], deps: dict[str, set[str]]) -> dict[str, set[str]]:
    """Every step's transitive dependencies (``todo`` is in topological order)."""
    before: dict[str, set[str]] = {}
    for s in todo:
        before[s] = set(deps[s]).union(*(before[d] for d in deps[s]))
    return before


def _components(
    remaining: list[str], deps: dict[str, set[str]], plan: DispatchPlan
) -> list[list[str]]:
    """Weakly connected components, each in a valid order (a chain).

    Steps on one repository share a component even without a dependency between them,
    so they never land in two parallel lines."""
    parent = {s: s for s in remaining}

    def root(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    first_on: dict[str, str] = {}
    for s in remaining:
        for d in deps[s]:
            if d in parent:
                parent[root(s)] = root(d)
        project = plan.step(s).project
        if project is not None:
            parent[root(s)] = root(first_on.setdefault(project, s))
    groups: dict[str, list[str]] = {}
    for s in remaining:  # ``remaining`` is in topological order, so each group is too
        groups.setdefault(root(s), []).append(s)
    return list(groups.values())


def priorities(plan: DispatchPlan, shape: Layout) -> dict[str, int]:
    """Broker priority of each step: 0 for the longest expected rest of the plan.

    A step's rest is its own expected time, what follows it in its line, and the stages
    after its own (the critical path of what is left once it starts)."""
    rest: dict[str, float] = {}
    later = 0.0
    for stage in reversed(shape.stages):
        longest = 0.0
        for line in stage:
            tail = later
            for s in reversed(line):
                tail += plan.step(s).estimate
                rest[s] = tail
            longest = max(longest, tail - later)
        later += longest
    top = max(rest.values(), default=0.0)
    if top <= 0:
        return {s: 0 for s in rest}
    return {s: round((PRIORITIES - 1) * (1 - r / top)) for s, r in rest.items()}


def step_signature(
    app: Celery, plan_id: str, step: DispatchStep, priority: int | None = None
) -> Signature:
    sig = _step(app, plan_id, step)
    failed = app.signature(FAILED, args=(plan_id,), queue=defaults.DIRECT_QUEUE, immutable=True)
    sig.set(link_error=[failed.set(shadow=plan_task_name("plan-failed", plan_id))])
    if priority is not None:
        sig.set(priority=priority)
    return sig


def _step(app: Celery, plan_id: str, step: DispatchStep) -> Signature:
    """The step's task: registered as ``overlord.<kind>``, shown as ``kind project · plan/step``."""
    return app.signature(
        step_task_name(step.kind),
        args=(plan_id, step.id),
        queue=step.queue,
        immutable=True,
        shadow=step_name(plan_id, step),
    )


def _finish(app: Celery, plan_id: str) -> Signature:
    return app.signature(
        FINISH,
        args=(plan_id,),
        queue=defaults.DIRECT_QUEUE,
        immutable=True,
        shadow=plan_task_name("finish", plan_id),
    )


def compile_plan(app: Celery, plan: DispatchPlan) -> Signature:
    """The canvas of every unfinished, non-push step of ``plan``."""
    todo = [
        s.id
        for s in plan.steps
        if s.kind is not ActionKind.PUSH and s.state in (StepState.PENDING, StepState.RUNNING)
    ]
    shape = layout(plan, todo)
    rank = priorities(plan, shape)

    def sig(s: str) -> Signature:
        return step_signature(app, plan.id, plan.step(s), rank[s])

    def line(ids: list[str]) -> Signature:
        return sig(ids[0]) if len(ids) == 1 else chain(*(sig(s) for s in ids), app=app)

    # built from the end: a one-line stage runs before the rest; a stage of several lines
    # is a chord whose body is the rest
    rest: list[Signature] = [_finish(app, plan.id)]
    for stage in reversed(shape.stages):
        if len(stage) == 1:
            rest = [sig(s) for s in stage[0]] + rest
        else:
            body = rest[0] if len(rest) == 1 else chain(*rest, app=app)
            rest = [chord(group(*(line(ln) for ln in stage), app=app), body, app=app)]
    return rest[0] if len(rest) == 1 else chain(*rest, app=app)


def compile_push(app: Celery, plan: DispatchPlan) -> Signature:
    """The push phase: one push per repository in parallel, then ``overlord.finish``.

    Push steps record their own failure and return, so the body always settles the plan.
    """
    pushes = [
        _step(app, plan.id, s)
        for s in plan.steps
        if s.kind is ActionKind.PUSH
        and s.state in (StepState.PENDING, StepState.RUNNING, StepState.FAILED)
    ]
    if not pushes:
        return _finish(app, plan.id)
    return chord(group(*pushes, app=app), _finish(app, plan.id), app=app)


def compile_rollback(app: Celery, plan: DispatchPlan, step_ids: list[str]) -> Signature:
    """Undo ``step_ids`` one after another, then settle the plan."""
    known = {s.id: s for s in plan.steps}
    sigs = [
        app.signature(
            "overlord.undo",
            args=(plan.id, s),
            queue=defaults.DIRECT_QUEUE,
            immutable=True,
            shadow=undo_name(plan.id, known.get(s), s),
        )
        for s in step_ids
    ]
    done = app.signature(
        "overlord.rollback_done",
        args=(plan.id,),
        queue=defaults.DIRECT_QUEUE,
        immutable=True,
        shadow=plan_task_name("rollback-done", plan.id),
    )
    return chain(*sigs, done, app=app)
