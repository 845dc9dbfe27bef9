"""The statements on the per-step path of the plan store, built once (bound parameters):
building a statement costs more than running it on SQLite, and ``hotpath`` compiles each
of them once for the DB-API path."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, update

from overlord.adapters.sql import schema
from overlord.core.plan import PlanState, StepState

STEPS = schema.steps.c
THIS_STEP = (STEPS.plan_id == bindparam("pid")) & (STEPS.step_id == bindparam("sid"))
PLAN_STATE = (
    select(schema.plans.c.state).where(schema.plans.c.id == bindparam("pid")).with_for_update()
)
PLAN_STATE_READ = select(schema.plans.c.state).where(schema.plans.c.id == bindparam("pid"))
STEP_ROW = select(schema.steps).where(THIS_STEP)
GATE_PLAN = select(schema.plans.c.state, schema.plans.c.doc).where(
    schema.plans.c.id == bindparam("pid")
)
GATE_STEPS = select(STEPS.step_id, STEPS.state, STEPS.data, STEPS.undo).where(
    STEPS.plan_id == bindparam("pid")
)
EVENT = schema.events.insert().values(
    plan_id=bindparam("pid"),
    step_id=bindparam("sid"),
    at=bindparam("at"),
    kind=bindparam("kind"),
    message=bindparam("message"),
)
UPDATE_STEP = update(schema.steps).where(THIS_STEP)  # SET comes from the parameters' keys
#: pending|running → running, only while the plan runs; the row after the update
CLAIM = (
    update(schema.steps)
    .where(
        THIS_STEP
        & ((STEPS.state == StepState.PENDING.value) | (STEPS.state == StepState.RUNNING.value))
        & (
            select(schema.plans.c.state)
            .where(schema.plans.c.id == bindparam("pid"))
            .scalar_subquery()
            == PlanState.RUNNING.value
        )
    )
    .values(
        state=StepState.RUNNING.value,
        attempts=STEPS.attempts + 1,
        started_at=bindparam("now"),  # this attempt's start: a dead one's wait is not work
        worker=bindparam("worker"),
    )
    .returning(*schema.steps.c)
)
DONE = schema.steps.alias("done")  # not correlated with the row being updated
#: succeeded: the step's place in the order of completion (rollback undoes in reverse)
FINISH_SUCCEEDED = UPDATE_STEP.values(
    finished_seq=select(func.coalesce(func.max(DONE.c.finished_seq), 0) + 1)
    .where(DONE.c.plan_id == bindparam("pid"))
    .scalar_subquery()
)
#: the same on PostgreSQL, where concurrent finishes would read the same ``max``
FINISH_SUCCEEDED_SEQ = UPDATE_STEP.values(finished_seq=schema.finish_order.next_value())
