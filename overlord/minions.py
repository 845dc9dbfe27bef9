"""Code work for minions: planning minion steps (routing comes with the minion runtime)."""

from __future__ import annotations

from overlord.config import Config
from overlord.errors import PlanError
from overlord.parser import Intent
from overlord.plan import DispatchPlan


def plan_code(config: Config, intent: Intent, *, tier: str | None = None) -> DispatchPlan:
    raise PlanError(
        f"code work ({intent.task_type}) needs the minion runtime, which is not wired in yet",
        "use a git chore form for now (run tests, merge, tag, update, clean stale branches)",
    )
