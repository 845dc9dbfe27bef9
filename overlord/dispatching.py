"""The dispatch use case: from an instruction to a plan's outcome, the same for every
entry (``overlord dispatch`` and ``release``, ``approve``, beat's scheduled runs).

Planning is pure; the endpoints' health it routes code work by is gathered here, at the
edge (``routing.check.routed``: the cache, checked first when it holds nothing fresh,
SPEC §4.5), and only when the plan has code work to route.
"""

from __future__ import annotations

from overlord import planner
from overlord.config import Config
from overlord.parser import Intent
from overlord.plan import DispatchPlan


def plan_intents(
    config: Config, intents: list[Intent], *, tier: str | None = None, task: str | None = None
) -> DispatchPlan:
    """The plan for parsed ``intents`` (one plan, named ``task``), code work routed by the
    endpoints' health as known now."""
    from overlord.routing.check import routed

    return routed(
        config,
        lambda known: planner.plan_for_all(intents, config, tier=tier, task=task, known=known),
        models=planner.routes_models(intents),
    )
