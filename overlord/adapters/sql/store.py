"""Persisted plans, steps and events (SPEC §4.3): the source of truth, not Celery results.

A plan and its steps are written before anything is enqueued; every transition is a
compare-and-set on the row, so a redelivered task or a second worker cannot act twice.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update

from overlord import notify
from overlord.adapters.sql import db, hotpath, plan_rows, schema
from overlord.adapters.sql import store_statements as sql
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from overlord.core.secrets import redact
from overlord.errors import PlanNotFound

#: Notified after every plan transition committed in this process (``runner.wait``).
_TRANSITIONS = threading.Condition()
#: How many there were (``Store.transitions``); changed while holding ``_TRANSITIONS``.
_MADE = [0]


class Store:
    """Plans in the state database at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    # --- plans ------------------------------------------------------------

    def save(self, plan: DispatchPlan) -> None:
        """Insert a new plan with all its steps in one transaction."""
        doc = plan.model_dump(mode="json", include=set(plan_rows.PLAN_DOC))
        with db.write(self.url) as conn:
            conn.execute(
                schema.plans.insert().values(
                    id=plan.id,
                    task=plan.task,
                    kind=plan.kind,
                    state=plan.state.value,
                    created_at=plan.created_at,
                    updated_at=schema.utcnow(),
                    doc=doc,
                )
            )
            rows = []
            for seq, step in enumerate(plan.steps):
                dumped = step.model_dump(mode="json")
                rows.append(
                    {
                        "plan_id": plan.id,
                        "step_id": step.id,
                        "seq": seq,
                        "data": {k: dumped[k] for k in plan_rows.STEP_DATA},
                        **{k: getattr(step, k) for k in plan_rows.STEP_COLUMNS},
                    }
                )
            if rows:
                conn.execute(schema.steps.insert(), rows)
            _event(conn, plan.id, None, "created", f"plan saved as {plan.state.value}")
        notify.entered(self.url, plan.id, plan.state)  # a plan born pending: webhooks

    def resolve_id(self, plan_id: str) -> str:
        """The full id of the plan ``plan_id`` names (a unique prefix works)."""
        with db.connect(self.url) as conn:
            ids = (
                conn.execute(
                    select(schema.plans.c.id)
                    .where(schema.plans.c.id.startswith(plan_id, autoescape=True))
                    .limit(3)
                )
                .scalars()
                .all()
            )
        return plan_rows.one_id(plan_id, list(ids))

    def load(self, plan_id: str) -> DispatchPlan:
        plan_id = self.resolve_id(plan_id)
        with db.connect(self.url) as conn:
            row = (
                conn.execute(select(schema.plans).where(schema.plans.c.id == plan_id))
                .mappings()
                .one()
            )
            step_rows = (
                conn.execute(
                    select(schema.steps)
                    .where(schema.steps.c.plan_id == plan_id)
                    .order_by(schema.steps.c.seq)
                )
                .mappings()
                .all()
            )
        steps = [plan_rows.step_from_row(r) for r in step_rows]
        return DispatchPlan.model_validate(
            {
                "id": row["id"],
                "task": row["task"],
                "kind": row["kind"],
                "state": row["state"],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
                "steps": steps,
                **row["doc"],
            }
        )

    def load_step(self, plan_id: str, step_id: str) -> DispatchStep:
        """One step of a plan (``plan_id`` in full), without loading the whole plan."""
        where = (schema.steps.c.plan_id == plan_id) & (schema.steps.c.step_id == step_id)
        with db.connect(self.url) as conn:
            row = conn.execute(select(schema.steps).where(where)).mappings().one_or_none()
        if row is None:
            raise PlanNotFound(f"plan {plan_id} has no step {step_id!r}")
        return plan_rows.step_from_row(row)

    def step_projects(self, plan_id: str) -> dict[str, str | None]:
        """Step id → project of every step of a plan."""
        with db.connect(self.url) as conn:
            rows = conn.execute(
                select(schema.steps.c.step_id, schema.steps.c.data).where(
                    schema.steps.c.plan_id == plan_id
                )
            ).all()
        return {r.step_id: (r.data or {}).get("project") for r in rows}

    def list_plans(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query = select(schema.plans).order_by(schema.plans.c.created_at.desc()).limit(limit)
        if state:
            query = query.where(schema.plans.c.state == state)
        with db.connect(self.url) as conn:
            rows = conn.execute(query).mappings().all()
        return [plan_rows.listed(r) for r in rows]

    def state(self, plan_id: str) -> PlanState:
        """The plan's state: one cheap read (``runner.wait`` polls it)."""
        rows = hotpath.read(self.url, sql.PLAN_STATE_READ, {"pid": plan_id})
        value = rows[0]["state"] if rows else None
        if value is None:
            raise PlanNotFound(f"no plan with id {plan_id!r}")
        return PlanState(value)

    def gate_view(self, plan_id: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]] | None:
        """A plan's state, document and step rows (id, state, data, undo) as two cheap
        reads, for the lifecycle gate; None when there is no plan ``plan_id`` (in full)."""
        plans = hotpath.read(self.url, sql.GATE_PLAN, {"pid": plan_id})
        if not plans:
            return None
        rows = hotpath.read(self.url, sql.GATE_STEPS, {"pid": plan_id})
        return plans[0]["state"], dict(plans[0]["doc"] or {}), rows

    def transition(
        self, plan_id: str, to: PlanState, *, expect: Iterable[PlanState] | None = None, **doc: Any
    ) -> bool:
        """Move a plan to ``to`` if it is in one of ``expect``; True if this call moved it.

        Called only by ``overlord.lifecycle.move`` (the table of allowed transitions)."""
        with db.write(self.url) as conn:
            row = conn.execute(
                select(schema.plans.c.state, schema.plans.c.doc)
                .where(schema.plans.c.id == plan_id)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise PlanNotFound(f"no plan with id {plan_id!r}")
            if expect is not None and PlanState(row.state) not in set(expect):
                return False
            values: dict[str, Any] = {"state": to.value, "updated_at": schema.utcnow()}
            if doc:
                values["doc"] = plan_rows.merged_doc(row.doc, doc)
            conn.execute(update(schema.plans).where(schema.plans.c.id == plan_id).values(**values))
            _event(conn, plan_id, None, "plan", f"-> {to.value}")
        with _TRANSITIONS:
            _MADE[0] += 1
            _TRANSITIONS.notify_all()
        return True

    @staticmethod
    def transitions() -> int:
        """How many plan transitions this process has committed (``wait_for_transition``)."""
        return _MADE[0]

    @staticmethod
    def wait_for_transition(timeout: float, after: int | None = None) -> None:
        """Sleep up to ``timeout`` seconds, less when a plan of this process changes state
        (an in-process worker settling it), and not at all when one did since
        ``transitions()`` answered ``after``; other processes' changes are seen by polling."""
        with _TRANSITIONS:
            if after is None or after == _MADE[0]:
                _TRANSITIONS.wait(timeout)

    def update_doc(self, plan_id: str, **doc: Any) -> None:
        """Change keys of the plan's document (``add_notes=[...]`` appends to its notes);
        the row is locked from the read to the write, so no concurrent change is lost."""
        with db.write(self.url) as conn:
            current = conn.execute(
                select(schema.plans.c.doc).where(schema.plans.c.id == plan_id).with_for_update()
            ).scalar()
            conn.execute(
                update(schema.plans)
                .where(schema.plans.c.id == plan_id)
                .values(doc=plan_rows.merged_doc(current or {}, doc), updated_at=schema.utcnow())
            )

    # --- steps --------------------------------------------------------------

    def claim(self, plan_id: str, step_id: str, worker: str) -> DispatchStep | None:
        """Mark a step running (pending → running, or a redelivered running one).

        Returns the claimed step (its ``undo`` record tells the caller whether an earlier
        attempt got as far as acting), or None when it finished already or its plan is no
        longer running, so it must not act. The usual case is one statement: a short
        write transaction is what lets parallel steps through quickly.
        """
        ids = {"pid": plan_id, "sid": step_id}
        claim = {**ids, "now": schema.utcnow(), "worker": worker}
        with hotpath.step_write(self.url) as txn:
            claimed = txn.execute(sql.CLAIM, claim)
            if claimed:
                return plan_rows.step_from_row(claimed[0])
            plan_state = txn.execute(sql.PLAN_STATE, ids)
            row = txn.execute(sql.STEP_ROW, ids)
            if not row or not plan_state:
                raise PlanNotFound(f"plan {plan_id} has no step {step_id!r}")
            if StepState(row[0]["state"]).finished:
                return None
            if plan_state[0]["state"] != PlanState.RUNNING.value:
                # the plan failed or was cancelled meanwhile: this step must not act
                skipped = {"state": StepState.SKIPPED.value, "ended_at": schema.utcnow()}
                txn.execute(sql.UPDATE_STEP, {**ids, **skipped})
                return None
            raise PlanNotFound(f"plan {plan_id}: step {step_id!r} could not be claimed")

    def record_undo(self, plan_id: str, step_id: str, undo: dict[str, Any]) -> None:
        """Persist what the step's undo needs, before the step acts."""
        self._update_step(plan_id, step_id, undo=plan_rows.jsonable(undo))

    def set_route(
        self, plan_id: str, step_id: str, endpoint: str, reason: str, tier: str | None = None
    ) -> None:
        """Record the endpoint a step actually used, why, and (after a fallback) its tier."""
        where = (schema.steps.c.plan_id == plan_id) & (schema.steps.c.step_id == step_id)
        with db.write(self.url) as conn:
            values: dict[str, Any] = {"endpoint": endpoint, "route_reason": reason}
            if tier is not None:
                data = conn.execute(
                    select(schema.steps.c.data).where(where).with_for_update()
                ).scalar()
                values["data"] = {**(data or {}), "tier": tier}
            conn.execute(update(schema.steps).where(where).values(**values))

    def finish(
        self,
        plan_id: str,
        step_id: str,
        state: StepState,
        *,
        output: str = "",
        error: str | None = None,
        undo: dict[str, Any] | None = None,
    ) -> None:
        """Record how a step ended (and, for a step that acted, its final undo record)."""
        values = plan_rows.finished(state, schema.utcnow(), output, error, undo)
        ids = {"pid": plan_id, "sid": step_id}
        event = {**ids, "at": values["ended_at"], "kind": "step", "message": values.pop("message")}
        with hotpath.step_write(self.url) as txn:
            statement = sql.UPDATE_STEP
            if state is StepState.SUCCEEDED:
                statement = (
                    sql.FINISH_SUCCEEDED_SEQ if _sequences(self.url) else sql.FINISH_SUCCEEDED
                )
            txn.execute(statement, {**ids, **values})
            txn.execute(sql.EVENT, event)

    def set_step_state(self, plan_id: str, step_id: str, state: StepState) -> None:
        self._update_step(plan_id, step_id, state=state.value)

    def reset_lost(self, plan_id: str, step_id: str, *, worker: str | None, attempts: int) -> bool:
        """A lost step back to pending, only if still the same attempt (compare-and-set)."""
        where = (
            (schema.steps.c.plan_id == plan_id)
            & (schema.steps.c.step_id == step_id)
            & (schema.steps.c.state == StepState.RUNNING.value)
            & (schema.steps.c.attempts == attempts)
            & (schema.steps.c.worker == worker)
        )
        with db.write(self.url) as conn:
            result = conn.execute(
                update(schema.steps).where(where).values(state=StepState.PENDING.value)
            )
            return bool(result.rowcount)

    def reset_unfinished(self, plan_id: str) -> None:
        """Running steps of a dead run go back to pending (their idempotency check decides)."""
        with db.write(self.url) as conn:
            conn.execute(
                update(schema.steps)
                .where(
                    (schema.steps.c.plan_id == plan_id)
                    & (schema.steps.c.state == StepState.RUNNING.value)
                )
                .values(state=StepState.PENDING.value)
            )

    def _update_step(self, plan_id: str, step_id: str, **values: Any) -> None:
        with db.write(self.url) as conn:
            conn.execute(
                update(schema.steps)
                .where((schema.steps.c.plan_id == plan_id) & (schema.steps.c.step_id == step_id))
                .values(**values)
            )

    # --- events -----------------------------------------------------------

    def event(self, plan_id: str, step_id: str | None, kind: str, message: str) -> None:
        with db.write(self.url) as conn:
            _event(conn, plan_id, step_id, kind, message)

    def events(self, plan_id: str) -> list[dict[str, Any]]:
        with db.connect(self.url) as conn:
            rows = (
                conn.execute(
                    select(schema.events)
                    .where(schema.events.c.plan_id == plan_id)
                    .order_by(schema.events.c.id)
                )
                .mappings()
                .all()
            )
        return [{**r, "at": r["at"].isoformat()} for r in rows]


def _event(conn: Any, plan_id: str, step_id: str | None, kind: str, message: str) -> None:
    """Record an event in the caller's transaction (one commit for a change and its event)."""
    conn.execute(
        sql.EVENT,
        {
            "pid": plan_id,
            "sid": step_id,
            "at": schema.utcnow(),
            "kind": kind,
            "message": redact(message),
        },
    )


@functools.lru_cache(maxsize=64)
def _sequences(url: str) -> bool:
    """Whether the database at ``url`` numbers completions with a sequence (PostgreSQL)."""
    return not hotpath.direct(url) and db.engine_for(url).dialect.name == "postgresql"
