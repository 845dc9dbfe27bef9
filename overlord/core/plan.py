"""Plans and steps (SPEC §3): a validated DAG of steps with states and a scope."""

from __future__ import annotations

import heapq
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from graphlib import CycleError, TopologicalSorter
from typing import Any

from pydantic import BaseModel, Field

from overlord import defaults
from overlord.core.config import ActionKind, Tier
from overlord.core.scope import ActionScope, Touch
from overlord.errors import PlanError


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDONE = "undone"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self is not StepState.PENDING and self is not StepState.RUNNING


class PlanState(StrEnum):
    PENDING = "pending"  # proposed, waiting for a person's approval
    QUEUED = "queued"  # approved, persisted, about to be (or being) enqueued
    RUNNING = "running"
    AWAITING_PUSH = "awaiting-push"  # everything passed; the push waits for a person
    SUCCEEDED = "succeeded"
    FAILING = "failing"  # a step failed; the rollback is about to run
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"  # failed and left as is (rollback off, or the rollback itself failed)
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def waiting(self) -> bool:
        return self in (PlanState.PENDING, PlanState.AWAITING_PUSH)


_TERMINAL = {
    PlanState.SUCCEEDED,
    PlanState.ROLLED_BACK,
    PlanState.FAILED,
    PlanState.REJECTED,
    PlanState.CANCELLED,
}


def new_plan_id() -> str:
    return uuid.uuid4().hex[:10]


def now() -> datetime:
    return datetime.now(UTC)


class DispatchStep(BaseModel):
    id: str
    kind: ActionKind
    project: str | None = None
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    tier: Tier | None = None
    queue: str = defaults.DIRECT_QUEUE
    endpoint: str | None = None
    route_reason: str | None = None
    timeout: int = 300
    estimate: float = 5.0
    #: where ``estimate`` comes from: "default" (the kind's constant) or "remembered"
    estimate_source: str = "default"
    state: StepState = StepState.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    finished_seq: int | None = None
    worker: str | None = None
    output: str = ""
    error: str | None = None
    undo: dict[str, Any] = Field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started_at and self.ended_at:
            return (self.ended_at - self.started_at).total_seconds()
        return None

    def touch(self) -> Touch | None:
        if self.project is None:
            return None
        branches = tuple(str(b) for b in self.params.get("branches", ()))
        return Touch(self.kind, self.project, branches)


class Translation(BaseModel):
    """Text no form matched, and the supported instructions a model translated it into.

    A plan carrying one never runs without a person's answer (``person_approved``)."""

    original: str
    lines: list[str]
    answer: str = ""  # the model's whole answer, cleaned of control characters
    endpoint: str | None = None
    model: str | None = None
    tier: str | None = None
    route_reason: str = ""


class DispatchPlan(BaseModel):
    id: str = Field(default_factory=new_plan_id)
    task: str
    kind: str = "dispatch"  # dispatch | release
    steps: list[DispatchStep]
    scope: ActionScope = Field(default_factory=ActionScope)
    state: PlanState = PlanState.QUEUED
    requires_approval: bool = False
    approval_reason: str = ""
    scheduled_run: bool = False
    push_approved: bool = False
    translation: Translation | None = None
    person_approved: bool = False  # a person answered at the prompt or `overlord approve`
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime | None = None
    original_branches: dict[str, str | None] = Field(default_factory=dict)
    error: str | None = None
    undone: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    owner: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    def step(self, step_id: str) -> DispatchStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise PlanError(f"plan {self.id} has no step {step_id!r}")

    @property
    def projects(self) -> list[str]:
        return sorted({s.project for s in self.steps if s.project})

    @property
    def kinds(self) -> set[ActionKind]:
        return {s.kind for s in self.steps}

    @property
    def estimated_duration(self) -> float:
        """The critical path of the DAG in seconds, from each step's estimate."""
        finish: dict[str, float] = {}
        for step_id in self.order():
            step = self.step(step_id)
            start = max((finish[d] for d in step.depends_on), default=0.0)
            finish[step_id] = start + step.estimate
        return max(finish.values(), default=0.0)

    def expected_wall(self, limit: int) -> float:
        """Expected wall time of the unfinished steps on ``limit`` slots: each step starts
        when a slot frees, the longest expected rest first, never two on one repository."""
        todo = [s for s in self.steps if not s.state.finished]
        ids = {s.id for s in todo}
        deps = {s.id: set(s.depends_on) & ids for s in todo}
        rest: dict[str, float] = {}
        for sid in reversed([i for i in self.order() if i in ids]):
            after = [rest[o.id] for o in todo if sid in deps[o.id]]
            rest[sid] = self.step(sid).estimate + max(after, default=0.0)
        done: set[str] = set()
        running: list[tuple[float, str]] = []
        busy: set[str] = set()
        clock = 0.0
        waiting = sorted(ids, key=lambda s: -rest[s])
        while waiting or running:
            for sid in list(waiting):
                repo = self.step(sid).project or sid
                if len(running) < max(1, limit) and deps[sid] <= done and repo not in busy:
                    busy.add(repo)
                    waiting.remove(sid)
                    heapq.heappush(running, (clock + self.step(sid).estimate, sid))
            if not running:  # unreachable for a valid DAG; never loop forever
                break
            clock, sid = heapq.heappop(running)
            done.add(sid)
            busy.discard(self.step(sid).project or sid)
        return clock

    def order(self) -> list[str]:
        """Step ids in a valid execution order (ties keep the plan's order)."""
        position = {s.id: i for i, s in enumerate(self.steps)}
        sorter = TopologicalSorter({s.id: set(s.depends_on) for s in self.steps})
        sorter.prepare()
        out: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            out.extend(ready)
            sorter.done(*ready)
        return out

    def validate_dag(self) -> None:
        ids = [s.id for s in self.steps]
        if len(set(ids)) != len(ids):
            raise PlanError(f"plan {self.id}: duplicate step ids")
        known = set(ids)
        for step in self.steps:
            missing = [d for d in step.depends_on if d not in known]
            if missing:
                raise PlanError(f"plan {self.id}: step {step.id} depends on unknown {missing}")
        try:
            self.order()
        except CycleError as exc:
            raise PlanError(
                f"plan {self.id}: steps form a cycle {' -> '.join(exc.args[1])}"
            ) from None

    def compute_scope(self, shared_libraries: list[str]) -> ActionScope:
        touches = [t for t in (s.touch() for s in self.steps) if t is not None]
        self.scope = ActionScope.of(touches, shared_libraries)
        return self.scope

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "state": self.state.value,
            "created_at": self.created_at.isoformat(),
            "steps": len(self.steps),
            "projects": self.projects,
        }
