"""Plan → Celery canvas, explicitly and flat.

A plan's DAG becomes: the steps every other step waits for (a chain), then the
independent lines of work (one chain each, at most ``max_concurrent_steps`` of them, as
the header of one chord), then the steps that wait for everything (the chord body,
ending with ``overlord.finish``). Steps on one repository are always ordered by the
planner, so no two of them run at once. Every step signature carries the plan's error
callback, ``overlord.plan_failed``, which starts the rollback once per plan.

The push steps of a plan are a separate phase (``compile_push``), enqueued only after a
person approved the push.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from overlord.config import ActionKind
from overlord.plan import DispatchPlan, DispatchStep, StepState
from overlord.tasks.definitions import step_task_name
from overlord.tasks.names import plan_task_name, step_name, undo_name

FINISH = "overlord.finish"
FAILED = "overlord.plan_failed"


@dataclass
class Layout:
    """The shape of a compiled plan, as step ids (what the canvas is built from)."""

    prefix: list[str] = field(default_factory=list)
    lines: list[list[str]] = field(default_factory=list)
    suffix: list[str] = field(default_factory=list)


def layout(plan: DispatchPlan, step_ids: list[str], max_lines: int) -> Layout:
    """Split the sub-DAG of ``step_ids`` into prefix, parallel lines and suffix."""
    todo = [s for s in plan.order() if s in set(step_ids)]
    deps = {s: set(plan.step(s).depends_on) & set(todo) for s in todo}
    out = Layout()
    remaining = list(todo)

    def sources() -> list[str]:
        return [s for s in remaining if not deps[s] & set(remaining)]

    def sinks() -> list[str]:
        return [s for s in remaining if not any(s in deps[o] for o in remaining if o != s)]

    while remaining and len(sources()) == 1:
        out.prefix.append(sources()[0])
        remaining.remove(out.prefix[-1])
    while len(remaining) > 1 and len(sinks()) == 1:
        out.suffix.insert(0, sinks()[0])
        remaining.remove(out.suffix[0])
    out.lines = _pack(_components(remaining, deps, plan), plan, max(1, max_lines))
    return out


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


def _pack(lines: list[list[str]], plan: DispatchPlan, limit: int) -> list[list[str]]:
    """At most ``limit`` lines: longest first, each into the currently shortest bin."""
    if len(lines) <= limit:
        return lines
    cost = {tuple(line): sum(plan.step(s).estimate for s in line) for line in lines}
    bins: list[list[str]] = [[] for _ in range(limit)]
    load = [0.0] * limit
    for line in sorted(lines, key=lambda ln: -cost[tuple(ln)]):
        i = load.index(min(load))
        bins[i].extend(line)
        load[i] += cost[tuple(line)]
    return [b for b in bins if b]


def step_signature(app: Celery, plan_id: str, step: DispatchStep) -> Signature:
    sig = _step(app, plan_id, step)
    failed = app.signature(FAILED, args=(plan_id,), queue="direct", immutable=True)
    sig.set(link_error=[failed.set(shadow=plan_task_name("plan-failed", plan_id))])
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
        queue="direct",
        immutable=True,
        shadow=plan_task_name("finish", plan_id),
    )


def _line(app: Celery, plan: DispatchPlan, ids: list[str]) -> Signature:
    sigs = [step_signature(app, plan.id, plan.step(s)) for s in ids]
    return sigs[0] if len(sigs) == 1 else chain(*sigs, app=app)


def compile_plan(app: Celery, plan: DispatchPlan, max_lines: int) -> Signature:
    """The canvas of every unfinished, non-push step of ``plan``."""
    todo = [
        s.id
        for s in plan.steps
        if s.kind is not ActionKind.PUSH and s.state in (StepState.PENDING, StepState.RUNNING)
    ]
    shape = layout(plan, todo, max_lines)
    prefix = [step_signature(app, plan.id, plan.step(s)) for s in shape.prefix]
    tail = [step_signature(app, plan.id, plan.step(s)) for s in shape.suffix] + [
        _finish(app, plan.id)
    ]
    if len(shape.lines) <= 1:
        middle = [step_signature(app, plan.id, plan.step(s)) for line in shape.lines for s in line]
        return chain(*prefix, *middle, *tail, app=app)
    header = group(*(_line(app, plan, line) for line in shape.lines), app=app)
    body = tail[0] if len(tail) == 1 else chain(*tail, app=app)
    fan = chord(header, body, app=app)
    return chain(*prefix, fan, app=app) if prefix else fan


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
            queue="direct",
            immutable=True,
            shadow=undo_name(plan.id, known.get(s), s),
        )
        for s in step_ids
    ]
    done = app.signature(
        "overlord.rollback_done",
        args=(plan.id,),
        queue="direct",
        immutable=True,
        shadow=plan_task_name("rollback-done", plan.id),
    )
    return chain(*sigs, done, app=app)
