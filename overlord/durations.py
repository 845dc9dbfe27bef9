"""Expected step durations, remembered per (project, step kind) in the state database.

When a plan settles, every step that ran to success teaches the expected duration of
its kind on its project: an exponentially weighted mean of recent runs (the newest
weighs ``defaults.DURATION_WEIGHT``). A new plan's steps take the remembered value as
their ``estimate`` (source ``remembered``); with nothing remembered they keep the
planner's constant for their kind (source ``default``). The compiler orders lines and the slots take steps by
these estimates, and ``dispatch --dry-run`` / ``plans show`` print them.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, tuple_

from overlord import defaults
from overlord.adapters.sql import db, schema
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, StepState
from overlord.kinds import registry as kind_registry

log = logging.getLogger(__name__)

REMEMBERED = "remembered"
DEFAULT = "default"
#: The plan option recording ``max_concurrent_steps`` when it was planned.
SLOTS_OPTION = "max_concurrent_steps"

Key = tuple[str, str]


def _key(project: str | None, kind: ActionKind) -> Key:
    return (project or "", kind.value)


def remembered(url: str, keys: set[Key]) -> dict[Key, float]:
    """The remembered seconds of each of ``keys`` that has any."""
    if not keys:
        return {}
    table = schema.durations
    with db.connect(url) as conn:
        rows = conn.execute(
            select(table.c.project, table.c.kind, table.c.seconds).where(
                tuple_(table.c.project, table.c.kind).in_(sorted(keys))
            )
        ).all()
    return {(r.project, r.kind): float(r.seconds) for r in rows}


def expect(config: Config, plan: DispatchPlan) -> DispatchPlan:
    """Give each step of ``plan`` its expected duration and say where it came from; the
    plan keeps the slot count its expected wall time is computed for."""
    assert config.state_url
    plan.options[SLOTS_OPTION] = config.dispatch.max_concurrent_steps
    try:
        known = remembered(config.state_url, {_key(s.project, s.kind) for s in plan.steps})
    except Exception as exc:  # a hint only: never stop a plan for it
        log.warning("expected durations not read: %s", exc)
        known = {}
    for step in plan.steps:
        seconds = known.get(_key(step.project, step.kind))
        if seconds is not None:
            step.estimate = round(seconds, 3)
            step.estimate_source = REMEMBERED
        else:
            step.estimate_source = DEFAULT
    return plan


def expected(config: Config, plan: DispatchPlan) -> bool:
    """Whether ``expect`` already gave ``plan`` its durations for ``config``'s slot count."""
    return plan.options.get(SLOTS_OPTION) == config.dispatch.max_concurrent_steps


def learn(url: str, plan: DispatchPlan) -> None:
    """Fold the durations of ``plan``'s successful steps into what is remembered."""
    runs: dict[Key, list[float]] = {}
    for step in plan.steps:
        ran = step.state is StepState.SUCCEEDED or (
            step.state is StepState.UNDONE and step.error is None
        )
        if ran and step.duration is not None and kind_registry.kind(step.kind).learns_duration:
            runs.setdefault(_key(step.project, step.kind), []).append(step.duration)
    if not runs:
        return
    table = schema.durations
    with db.write(url) as conn:
        rows = conn.execute(
            select(table.c.project, table.c.kind, table.c.seconds, table.c.runs).where(
                tuple_(table.c.project, table.c.kind).in_(sorted(runs))
            )
        ).all()
        old = {(r.project, r.kind): (float(r.seconds), int(r.runs)) for r in rows}
        now = schema.utcnow()
        for key, seconds in runs.items():
            mean = sum(seconds) / len(seconds)  # steps of one kind on one project in a plan
            if key in old:
                before, count = old[key]
                conn.execute(
                    table.update()
                    .where((table.c.project == key[0]) & (table.c.kind == key[1]))
                    .values(
                        seconds=defaults.DURATION_WEIGHT * mean
                        + (1 - defaults.DURATION_WEIGHT) * before,
                        runs=count + len(seconds),
                        updated_at=now,
                    )
                )
            else:
                conn.execute(
                    table.insert().values(
                        project=key[0], kind=key[1], seconds=mean, runs=len(seconds), updated_at=now
                    )
                )
