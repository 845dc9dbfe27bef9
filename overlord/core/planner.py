"""Intent → plan: which steps, on which repositories, in which order (SPEC §3).

Steps on the same repository always depend on the previous step there, so no two of
them ever run at once; steps on different repositories are independent unless the
action says otherwise.

Planning is pure: code work is routed by the ``routing.Known`` its caller passes (the
edges gather it with ``routing.check.routed``); nothing here checks an endpoint.
"""

from __future__ import annotations

from overlord.core.config import ActionKind, Config
from overlord.core.intent import Intent, IntentKind
from overlord.core.plan import DispatchPlan, DispatchStep
from overlord.core.plan_builder import PlanBuilder
from overlord.errors import PlanError
from overlord.kinds import registry as kind_registry
from overlord.routing.endpoints import Known


def routes_models(intents: list[Intent]) -> bool:
    """Whether planning ``intents`` routes work to a model endpoint (code work)."""
    return any(
        intent.kind is not IntentKind.RELEASE and kind_registry.kind(intent.kind).routes_to_models
        for intent in intents
    )


def plan_for(
    intent: Intent, config: Config, *, tier: str | None = None, known: Known | None = None
) -> DispatchPlan:
    """The plan that carries out ``intent``: a release, or the steps its kind adds on
    each of its projects (``Kind.add_steps``; a kind that plans across projects itself,
    code work, has ``Kind.plan``, and routes by ``known``)."""
    if intent.kind is IntentKind.RELEASE:
        from overlord.core.release import ReleaseOptions, plan_release

        assert intent.project and intent.version
        return plan_release(
            config, ReleaseOptions(project=intent.project, version=intent.version), intent.text
        )
    kind = kind_registry.kind(intent.kind)
    if kind.plan is not None:
        return kind.plan(intent, config, tier, known)
    if kind.add_steps is None:
        raise PlanError(f"cannot plan {intent.kind.value!r}", kind.planned_by or None)
    builder = PlanBuilder(config, intent.text)
    for project in intent.projects:
        kind.add_steps(builder, intent, project)
    return builder.build()


def plan_for_all(
    intents: list[Intent],
    config: Config,
    *,
    tier: str | None = None,
    task: str | None = None,
    known: Known | None = None,
) -> DispatchPlan:
    """One plan for several instructions (``parser.parse_all``), named ``task``."""
    if len(intents) == 1:
        plan = plan_for(intents[0], config, tier=tier, known=known)
        if task is not None:
            plan.task = task
        return plan
    plans = [plan_for(intent, config, tier=tier, known=known) for intent in intents]
    return combine(plans, config, task or "; ".join(i.text for i in intents))


def combine(plans: list[DispatchPlan], config: Config, task: str) -> DispatchPlan:
    """The steps of ``plans`` in one plan, in their order: a plan's first step on a
    repository runs after the last step an earlier plan has there (push steps, a phase
    of their own, excepted), so steps on one repository still never overlap."""
    steps: list[DispatchStep] = []
    last: dict[str, str] = {}
    for plan in plans:
        ids = {s.id: f"s{len(steps) + n}" for n, s in enumerate(plan.steps, 1)}
        seen: set[str] = set()
        for step in plan.steps:
            depends = [ids[d] for d in step.depends_on]
            project = step.project
            first_here = project and project not in seen and project in last
            if first_here and step.kind is not ActionKind.PUSH:
                depends.append(last[str(project)])
            if project:
                seen.add(project)
            steps.append(step.model_copy(update={"id": ids[step.id], "depends_on": depends}))
        for step in plan.steps:
            if step.project and step.kind is not ActionKind.PUSH:
                last[step.project] = ids[step.id]
    kind = "release" if any(p.kind == "release" for p in plans) else "dispatch"
    combined = DispatchPlan(task=task, kind=kind, steps=steps)
    combined.validate_dag()
    shared = [n for n, p in config.projects.items() if p.role == "shared-library"]
    combined.compute_scope(shared)
    return combined
