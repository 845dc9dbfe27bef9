"""``MemoryPlanStore``: the plan store (``ports.PlanStore``) in this process's memory.

Rows are kept as the SQL store keeps them (``plan_rows``: the plan's document, each step's
data and columns, JSON values, texts redacted), so a plan read back is what the state
database would give. One lock makes every call atomic, which is what the SQL store's
compare-and-set transactions give across processes.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from overlord import notify
from overlord.adapters.sql import plan_rows
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState, now
from overlord.core.secrets import redact
from overlord.errors import PlanNotFound
from overlord.ports import GateView, PlanStore


class MemoryPlanStore:
    """Plans in a dict. ``url`` names it (webhooks installed for that ``state_url`` hear
    its transitions, as with the SQL store)."""

    def __init__(self, url: str = "memory://plans") -> None:
        self.url = url
        self._lock = threading.RLock()
        self._transitions = threading.Condition(self._lock)
        self._made = 0  # transitions made (``transitions``)
        self._plans: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, dict[str, dict[str, Any]]] = {}  # plan → step id → row
        self._events: list[dict[str, Any]] = []
        self._event_ids = itertools.count(1)

    # --- plans ------------------------------------------------------------

    def save(self, plan: DispatchPlan) -> None:
        doc = plan.model_dump(mode="json", include=set(plan_rows.PLAN_DOC))
        with self._lock:
            if plan.id in self._plans:
                raise ValueError(f"plan {plan.id} exists already")
            self._plans[plan.id] = {
                "id": plan.id,
                "task": plan.task,
                "kind": plan.kind,
                "state": plan.state.value,
                "created_at": plan.created_at,
                "updated_at": now(),
                "doc": doc,
            }
            rows: dict[str, dict[str, Any]] = {}
            for seq, step in enumerate(plan.steps):
                dumped = step.model_dump(mode="json")
                columns = {k: getattr(step, k) for k in plan_rows.STEP_COLUMNS}
                columns["state"] = step.state.value
                columns["undo"] = plan_rows.jsonable(step.undo)
                rows[step.id] = {
                    "plan_id": plan.id,
                    "step_id": step.id,
                    "seq": seq,
                    "data": {k: dumped[k] for k in plan_rows.STEP_DATA},
                    **columns,
                }
            self._steps[plan.id] = rows
            self._event(plan.id, None, "created", f"plan saved as {plan.state.value}")
        notify.entered(self.url, plan.id, plan.state)

    def resolve_id(self, plan_id: str) -> str:
        with self._lock:
            ids = sorted(i for i in self._plans if i.startswith(plan_id))[:3]
        return plan_rows.one_id(plan_id, list(ids))

    def load(self, plan_id: str) -> DispatchPlan:
        plan_id = self.resolve_id(plan_id)
        with self._lock:
            row = copy.deepcopy(self._plans[plan_id])
            step_rows = copy.deepcopy(sorted(self._steps[plan_id].values(), key=_seq))
        doc = row.pop("doc")
        steps = [plan_rows.step_from_row(r) for r in step_rows]
        return DispatchPlan.model_validate({**row, "steps": steps, **doc})

    def load_step(self, plan_id: str, step_id: str) -> DispatchStep:
        with self._lock:
            row = copy.deepcopy(self._steps.get(plan_id, {}).get(step_id))
        if row is None:
            raise PlanNotFound(f"plan {plan_id} has no step {step_id!r}")
        return plan_rows.step_from_row(row)

    def step_projects(self, plan_id: str) -> dict[str, str | None]:
        with self._lock:
            rows = self._steps.get(plan_id, {})
            return {sid: (r["data"] or {}).get("project") for sid, r in rows.items()}

    def list_plans(self, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = [r for r in self._plans.values() if state is None or r["state"] == state]
            rows = sorted(rows, key=lambda r: r["created_at"], reverse=True)[:limit]
            return [plan_rows.listed(r) for r in rows]

    def state(self, plan_id: str) -> PlanState:
        with self._lock:
            row = self._plans.get(plan_id)
            if row is None:
                raise PlanNotFound(f"no plan with id {plan_id!r}")
            return PlanState(row["state"])

    def gate_view(self, plan_id: str) -> GateView | None:
        with self._lock:
            row = self._plans.get(plan_id)
            if row is None:
                return None
            steps = [
                {k: copy.deepcopy(r[k]) for k in ("step_id", "state", "data", "undo")}
                for r in self._steps[plan_id].values()
            ]
            return row["state"], copy.deepcopy(row["doc"]), steps

    def transition(
        self, plan_id: str, to: PlanState, *, expect: Iterable[PlanState] | None = None, **doc: Any
    ) -> bool:
        with self._lock:
            row = self._plans.get(plan_id)
            if row is None:
                raise PlanNotFound(f"no plan with id {plan_id!r}")
            if expect is not None and PlanState(row["state"]) not in set(expect):
                return False
            row["state"], row["updated_at"] = to.value, now()
            if doc:
                row["doc"] = plan_rows.merged_doc(row["doc"], doc)
            self._event(plan_id, None, "plan", f"-> {to.value}")
            self._made += 1
            self._transitions.notify_all()
        return True

    def transitions(self) -> int:
        return self._made

    def wait_for_transition(self, timeout: float, after: int | None = None) -> None:
        with self._transitions:
            if after is None or after == self._made:
                self._transitions.wait(timeout)

    def update_doc(self, plan_id: str, **doc: Any) -> None:
        with self._lock:
            row = self._plans.get(plan_id)
            if row is not None:
                row["doc"] = plan_rows.merged_doc(row["doc"] or {}, doc)
                row["updated_at"] = now()

    # --- steps --------------------------------------------------------------

    def claim(self, plan_id: str, step_id: str, worker: str) -> DispatchStep | None:
        with self._lock:
            plan, row = self._plans.get(plan_id), self._steps.get(plan_id, {}).get(step_id)
            if plan is None or row is None:
                raise PlanNotFound(f"plan {plan_id} has no step {step_id!r}")
            if StepState(row["state"]).finished:
                return None
            if plan["state"] != PlanState.RUNNING.value:
                # the plan failed or was cancelled meanwhile: this step must not act
                row.update(state=StepState.SKIPPED.value, ended_at=now())
                return None
            row.update(
                state=StepState.RUNNING.value,
                attempts=row["attempts"] + 1,
                started_at=now(),
                worker=worker,
            )
            return plan_rows.step_from_row(copy.deepcopy(row))

    def record_undo(self, plan_id: str, step_id: str, undo: dict[str, Any]) -> None:
        self._update_step(plan_id, step_id, undo=plan_rows.jsonable(undo))

    def set_route(
        self, plan_id: str, step_id: str, endpoint: str, reason: str, tier: str | None = None
    ) -> None:
        with self._lock:
            row = self._steps.get(plan_id, {}).get(step_id)
            if row is None:
                return
            row.update(endpoint=endpoint, route_reason=reason)
            if tier is not None:
                row["data"] = {**(row["data"] or {}), "tier": tier}

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
        values = plan_rows.finished(state, now(), output, error, undo)
        detail = values.pop("message")
        with self._lock:
            rows = self._steps.get(plan_id, {})
            if state is StepState.SUCCEEDED:
                done = [r["finished_seq"] or 0 for r in rows.values()]
                values["finished_seq"] = max(done, default=0) + 1
            if step_id in rows:
                rows[step_id].update(values)
            self._event(plan_id, step_id, "step", detail)

    def set_step_state(self, plan_id: str, step_id: str, state: StepState) -> None:
        self._update_step(plan_id, step_id, state=state.value)

    def reset_lost(self, plan_id: str, step_id: str, *, worker: str | None, attempts: int) -> bool:
        with self._lock:
            row = self._steps.get(plan_id, {}).get(step_id)
            if row is None or (row["state"], row["attempts"], row["worker"]) != (
                StepState.RUNNING.value,
                attempts,
                worker,
            ):
                return False
            row["state"] = StepState.PENDING.value
            return True

    def reset_unfinished(self, plan_id: str) -> None:
        with self._lock:
            for row in self._steps.get(plan_id, {}).values():
                if row["state"] == StepState.RUNNING.value:
                    row["state"] = StepState.PENDING.value

    def _update_step(self, plan_id: str, step_id: str, **values: Any) -> None:
        with self._lock:
            row = self._steps.get(plan_id, {}).get(step_id)
            if row is not None:
                row.update(values)

    # --- events -----------------------------------------------------------

    def event(self, plan_id: str, step_id: str | None, kind: str, message: str) -> None:
        with self._lock:
            self._event(plan_id, step_id, kind, message)

    def events(self, plan_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = [dict(e) for e in self._events if e["plan_id"] == plan_id]
        return [{**e, "at": e["at"].isoformat()} for e in rows]

    def _event(self, plan_id: str, step_id: str | None, kind: str, message: str) -> None:
        self._events.append(
            {
                "id": next(self._event_ids),
                "plan_id": plan_id,
                "step_id": step_id,
                "at": now(),
                "kind": kind,
                "message": redact(message),
            }
        )


def _seq(row: dict[str, Any]) -> int:
    seq: int = row["seq"]
    return seq


if TYPE_CHECKING:  # mypy checks that it is a PlanStore
    _check: PlanStore = MemoryPlanStore()
