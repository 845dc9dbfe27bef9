"""Code work for minions: one MINION step per project, routed to a model endpoint.

Routing happens twice. At plan time (here, pure) from what the caller knows of the
endpoints (``routing.Known``: cached health and slots in use, gathered at the edge by
``routing.check.routed``; an endpoint whose health is unknown counts as healthy) — so the
plan shows a tier, an endpoint and why. At run time (``overlord.minion_step``) the step
routes again when its endpoint has since been found unhealthy, and records where it
really went.
"""

from __future__ import annotations

from overlord.core.config import ActionKind, Config
from overlord.core.intent import Intent
from overlord.core.plan import DispatchPlan
from overlord.core.plan_builder import PlanBuilder
from overlord.errors import EndpointUnavailable, PlanError
from overlord.routing import Known, route
from overlord.routing.tiers import Complexity
from overlord.routing.tiers import tier as as_tier


def branch_name(plan_id: str, step_id: str) -> str:
    """The branch a minion step works on."""
    return f"overlord/{plan_id}/{step_id}"


def plan_code(
    config: Config, intent: Intent, *, tier: str | None = None, known: Known | None = None
) -> DispatchPlan:
    """The plan for a code-work intent (format, lint, feature, review, ...), routed by
    ``known`` (default: nothing known, every endpoint healthy and idle)."""
    if not config.models:
        raise EndpointUnavailable(
            "code work needs a model endpoint and none is configured",
            "add one under `models:` in the config (see `overlord models`)",
        )
    assert intent.task_type is not None
    task_type = intent.task_type.value
    level = (intent.complexity or Complexity.MEDIUM).value
    forced = as_tier(tier).value if tier else None
    known = known or Known()
    choice = route(
        config,
        task_type,
        level,
        health=known.health,
        in_flight=known.in_flight,
        force_tier=forced,
    )
    builder = PlanBuilder(config, intent.text)
    instruction = intent.instruction or intent.text
    projects = intent.projects or _default_projects(config)
    for project in projects:
        spec = config.projects[project]
        base = intent.branch or spec.source_branch
        step_id = builder.add(
            ActionKind.MINION,
            project,
            f"{task_type} ({level}) in {project} on a new branch from {base}: {instruction}",
            task_type=task_type,
            complexity=level,
            instruction=instruction,
            base=base,
            source=base,  # preflight checks that it exists
            forced_tier=forced,
        )
        step = builder.steps[-1]
        assert step.id == step_id
        step.tier = choice.tier
        step.queue = choice.queue
        step.endpoint = choice.endpoint
        step.route_reason = choice.reason
    return builder.build()


def _default_projects(config: Config) -> list[str]:
    """``plan|design TEXT`` without projects: the shared libraries, else the first project."""
    shared = [n for n, p in config.projects.items() if p.role == "shared-library"]
    if shared:
        return shared[:1]
    if not config.projects:
        raise PlanError("no project is configured", "add projects to the config")
    return [next(iter(config.projects))]
