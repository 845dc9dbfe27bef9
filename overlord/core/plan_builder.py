"""Building a plan step by step: stable step ids (s1, s2 ...), each step on a repository
after the previous one there, the plan validated and its scope computed at the end. Used
by the planner, release planning and code-work planning."""

from __future__ import annotations

from typing import Any

from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, DispatchStep
from overlord.errors import PlanError
from overlord.kinds import registry as kind_registry


class PlanBuilder:
    """Adds steps with stable ids (s1, s2 ...) and same-repository ordering."""

    def __init__(self, config: Config, task: str, kind: str = "dispatch") -> None:
        self.config = config
        self.task = task
        self.kind = kind
        self.steps: list[DispatchStep] = []
        self._last: dict[str, str] = {}

    def add(
        self,
        kind: ActionKind,
        project: str | None,
        description: str,
        after: list[str] | None = None,
        **params: Any,
    ) -> str:
        step_id = f"s{len(self.steps) + 1}"
        depends = list(after or [])
        if project is not None and project in self._last and self._last[project] not in depends:
            depends.append(self._last[project])
        self.steps.append(
            DispatchStep(
                id=step_id,
                kind=kind,
                project=project,
                description=description,
                params=params,
                depends_on=depends,
                timeout=self.config.dispatch.step_timeout_default,
                estimate=kind_registry.kind(kind).estimate,  # until one is remembered
            )
        )
        if project is not None:
            self._last[project] = step_id
        return step_id

    def build(self) -> DispatchPlan:
        if not self.steps:
            raise PlanError("the plan has no steps", "name at least one project")
        plan = DispatchPlan(task=self.task, kind=self.kind, steps=self.steps)
        plan.validate_dag()
        shared = [n for n, p in self.config.projects.items() if p.role == "shared-library"]
        plan.compute_scope(shared)
        return plan
