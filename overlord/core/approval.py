"""Approval (SPEC §4.1): may a plan execute now, or must a person approve it?

The one place approval is decided: ``decide`` (a plan's verdict, for ``overlord
dispatch``, ``release``, ``approve`` and scheduled runs alike), ``require_person`` (a
translated plan never runs without a person), ``proposal`` (a plan turned into a proposal,
e.g. when a scheduled run's preflight fails) and ``parse_kind`` (what may be pre-approved).
The policy itself, ``AutonomyPolicy``, is pure: no I/O, only the configuration and a
plan's action kinds and scope. (That a push runs only once a person approved it is also
checked at every entry by ``lifecycle``.)

Levels
    ``cautious``  nothing executes without a person's approval.
    ``proactive`` read-only, local, non-destructive plans execute; others are proposed.
    ``scheduled`` plans whose every action kind is pre-approved for every project they
                  touch execute (scheduled runs included); others are proposed. Read-only
                  kinds such as ``run-tests`` are no exception: they need pre-approval too.
                  ``noop`` does nothing and counts as approved everywhere.

A plan touching several projects is governed by the *strictest* level among them, in the
order ``cautious`` (strictest) > ``scheduled`` > ``proactive`` (most permissive): one
cautious project in a plan makes the whole plan cautious.

Always a person
    Releases and plans containing a ``push`` always need a person. ``yes=True`` (``--yes``)
    is a person's approval given in advance for one plan: it turns a proposal into
    execution, a release and a blast-radius escalation included, but it never covers a
    push (``Verdict.push_needs_person`` stays true: the push waits for an answer at the
    prompt or ``overlord approve ID``). Scheduled runs (beat) never carry ``yes``:
    ``scheduled_run=True`` ignores it. A plan a model translated from plain language
    (``translated=True``) is always proposed, ``yes`` or not: only a person's answer at
    the prompt or ``overlord approve ID`` runs it.

Blast radius
    A plan whose scope exceeds its level's limit in ``BLAST_LIMITS`` (higher estimated
    impact, or more written projects, than allowed) escalates to a proposal whose reason
    names what exceeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from overlord.core.config import ActionKind, Config, Level
from overlord.core.scope import ActionScope, Impact, Touch
from overlord.errors import ConfigError, PlanError
from overlord.kinds import registry as kind_registry

if TYPE_CHECKING:
    from overlord.core.plan import DispatchPlan


class Decision(StrEnum):
    EXECUTE = "execute"
    PROPOSE = "propose"


#: Strictness of each level: a plan is governed by the highest among the projects it touches.
STRICTNESS: dict[Level, int] = {Level.PROACTIVE: 0, Level.SCHEDULED: 1, Level.CAUTIOUS: 2}

#: Why a translated plan waits: ``--yes`` does not cover what a model read into the text.
TRANSLATED = (
    "a model translated the instruction: a person approves it at the prompt or with "
    "`overlord approve ID` (--yes does not cover a translation)"
)


@dataclass(frozen=True)
class BlastLimit:
    """The largest scope a level executes without a person.

    ``max_impact``: highest ``ActionScope.estimated_impact`` allowed.
    ``max_written_projects``: most projects a plan may write to (``None``: no count limit).
    """

    max_impact: Impact
    max_written_projects: int | None


#: Blast-radius limit per level. ``cautious`` proposes everything anyway, so its limit is
#: the smallest possible. ``proactive`` allows impact up to medium and at most 5 written
#: projects; ``scheduled`` allows impact up to medium (high impact — more than 3 written
#: projects, anything irreversible or remote — needs a person).
BLAST_LIMITS: dict[Level, BlastLimit] = {
    Level.CAUTIOUS: BlastLimit(Impact.LOW, 0),
    Level.PROACTIVE: BlastLimit(Impact.MEDIUM, 5),
    Level.SCHEDULED: BlastLimit(Impact.MEDIUM, None),
}


@dataclass(frozen=True)
class Verdict:
    """What the policy decided for one plan, and why.

    ``needs_person``: a person must answer before the plan completes — the plan is proposed,
    or it executes but its push waits for a person (``push_needs_person``).
    """

    decision: Decision
    reason: str
    needs_person: bool
    level: Level
    push_needs_person: bool = False

    @property
    def execute(self) -> bool:
        return self.decision is Decision.EXECUTE

    def as_dict(self) -> dict[str, object]:
        return {
            "decision": self.decision.value,
            "reason": self.reason,
            "needs_person": self.needs_person,
            "push_needs_person": self.push_needs_person,
            "level": self.level.value,
        }


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(set(items)))


class AutonomyPolicy:
    """The autonomy section of a configuration, applied to plans."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.autonomy = config.autonomy

    # --- levels ------------------------------------------------------------

    @property
    def global_level(self) -> Level:
        return self.autonomy.global_

    def level_for(self, project: str) -> Level:
        """The project's override, else the global level."""
        return self.autonomy.overrides.get(project, self.autonomy.global_)

    def effective_level(self, projects: Iterable[str]) -> Level:
        """The strictest level among ``projects`` (the global level when there are none)."""
        levels = [self.level_for(p) for p in projects]
        if not levels:
            return self.global_level
        return max(levels, key=STRICTNESS.__getitem__)

    def pre_approved(self, project: str) -> list[ActionKind]:
        return list(self.autonomy.pre_approved.get(project, []))

    def is_pre_approved(self, kind: ActionKind, projects: Iterable[str]) -> bool:
        """True when every project in ``projects`` (at least one) has ``kind`` pre-approved."""
        projects = list(projects)
        if kind_registry.kind(kind).always_approved:  # it does nothing
            return True
        if not projects or kind is ActionKind.PUSH:
            return False
        return all(kind in self.autonomy.pre_approved.get(p, ()) for p in projects)

    # --- decisions -----------------------------------------------------------

    def blast_excess(self, level: Level, scope: ActionScope) -> list[str]:
        """What in ``scope`` exceeds ``level``'s blast-radius limit (empty: nothing)."""
        limit = BLAST_LIMITS[level]
        excess: list[str] = []
        if scope.estimated_impact.rank > limit.max_impact.rank:
            excess.append(
                f"impact {scope.estimated_impact.value} > {limit.max_impact.value} allowed"
            )
        written = len(scope.written_projects)
        if limit.max_written_projects is not None and written > limit.max_written_projects:
            excess.append(f"{written} written projects > {limit.max_written_projects} allowed")
        return excess

    def _not_pre_approved(
        self,
        kinds: set[ActionKind],
        scope: ActionScope,
        touches: list[Touch] | None,
    ) -> list[str]:
        """``kind in project`` for every pair that is not pre-approved (push excluded)."""
        touched = touches or []
        pairs = {(t.kind, t.project) for t in touched}
        covered = {t.kind for t in touched}
        for kind in kinds - covered:
            pairs |= {(kind, p) for p in scope.projects} or {(kind, "")}
        return sorted(
            f"{kind.value} in {project}" if project else kind.value
            for kind, project in pairs
            if kind is not ActionKind.PUSH
            and not self.is_pre_approved(kind, [project] if project else [])
        )

    def decide(
        self,
        kinds: Iterable[ActionKind],
        scope: ActionScope,
        *,
        is_release: bool = False,
        scheduled_run: bool = False,
        yes: bool = False,
        touches: Iterable[Touch] | None = None,
        translated: bool = False,
    ) -> Verdict:
        """Decide whether a plan executes or is proposed (SPEC §4.1).

        ``touches`` (optional) says which kind touches which project; without it every
        kind is taken to touch every project in ``scope.projects`` (the cautious reading).
        """
        kinds = set(kinds)
        touch_list = list(touches) if touches is not None else None
        level = self.effective_level(scope.projects)
        push = ActionKind.PUSH in kinds or scope.affects_remote
        who = f" ({_names(scope.projects)})" if scope.projects else ""

        reasons: list[str] = []
        if translated:
            reasons.append(TRANSLATED)
        if is_release:
            reasons.append("a release always needs a person")
        if push:
            reasons.append("a push to a remote always needs a person")
        if level is Level.CAUTIOUS:
            reasons.append(f"autonomy is cautious{who}: nothing executes without approval")
        elif level is Level.PROACTIVE:
            problems = []
            if not scope.read_only:
                problems.append(f"writes to {_names(scope.written_projects) or 'a project'}")
            if scope.destructive:
                problems.append("is destructive")
            if not scope.local:
                problems.append("affects a remote")
            if problems:
                reasons.append(
                    "proactive executes only read-only, local, non-destructive plans; "
                    f"this one {', '.join(problems)}"
                )
        else:
            missing = self._not_pre_approved(kinds, scope, touch_list)
            if missing:
                reasons.append(
                    f"scheduled executes only pre-approved kinds; not pre-approved: "
                    f"{', '.join(missing)}"
                )
        if level is not Level.CAUTIOUS:
            excess = self.blast_excess(level, scope)
            if excess:
                reasons.append(f"blast radius exceeds the {level.value} limit: {', '.join(excess)}")

        approved_in_advance = yes and not scheduled_run and not translated
        if not reasons:
            why = {
                Level.PROACTIVE: "proactive: read-only, local, non-destructive plan",
                Level.SCHEDULED: "scheduled: every action kind is pre-approved for every project",
                Level.CAUTIOUS: "approved",  # unreachable: cautious always gives a reason
            }[level]
            return Verdict(Decision.EXECUTE, why, needs_person=False, level=level)
        if approved_in_advance:
            reason = "approved in advance with --yes (" + "; ".join(reasons) + ")"
            if push:
                reason += "; the push still waits for a person"
            return Verdict(
                Decision.EXECUTE, reason, needs_person=push, level=level, push_needs_person=push
            )
        return Verdict(
            Decision.PROPOSE,
            "; ".join(reasons),
            needs_person=True,
            level=level,
            push_needs_person=push,
        )

    # --- seed-style helpers --------------------------------------------------

    def can_auto_execute(self, kinds: Iterable[ActionKind], scope: ActionScope) -> bool:
        """True when the plan runs to its end with nobody asked."""
        verdict = self.decide(kinds, scope)
        return verdict.execute and not verdict.needs_person

    def should_propose(self, kinds: Iterable[ActionKind], scope: ActionScope) -> bool:
        """True when a person must approve the plan (or part of it) first."""
        return not self.can_auto_execute(kinds, scope)


# --- a plan's approval --------------------------------------------------------------


def decide(
    config: Config, plan: DispatchPlan, *, yes: bool = False, person: bool = False
) -> Verdict:
    """The verdict for ``plan``; ``person``: a person just answered yes at the prompt
    (which covers everything ``yes`` does, and a translation too)."""
    touches = [t for t in (s.touch() for s in plan.steps) if t is not None]
    return AutonomyPolicy(config).decide(
        plan.kinds,
        plan.scope,
        is_release=plan.kind == "release",
        scheduled_run=plan.scheduled_run,
        yes=yes or person,
        touches=touches,
        translated=plan.translation is not None and not (person or plan.person_approved),
    )


def proposal(verdict: Verdict, reason: str) -> Verdict:
    """``verdict`` turned into a proposal a person must answer, for ``reason``."""
    return replace(verdict, decision=Decision.PROPOSE, needs_person=True, reason=reason)


def require_person(plan: DispatchPlan) -> None:
    """Refuse to run a plan a model translated that no person has approved."""
    if plan.translation is not None and not plan.person_approved:
        raise PlanError(
            f"plan {plan.id} was translated by a model and no person has approved it",
            f"read it (`overlord plans show {plan.id}`), then `overlord approve {plan.id}`",
        )


def parse_kind(value: ActionKind | str) -> ActionKind:
    """An action kind that can be pre-approved (``Kind.pre_approvable``: not a push, which
    always needs a person, nor noop, which needs nothing), or a one-line ``ConfigError``."""
    approvable = kind_registry.pre_approvable()
    valid = ", ".join(k.value for k in approvable)
    text = str(value).strip().lower().replace("_", "-")
    if text == ActionKind.PUSH.value:
        raise ConfigError(
            f"push cannot be pre-approved: a push always needs a person (pre-approvable: {valid})"
        )
    try:
        kind = ActionKind(text)
    except ValueError:
        raise ConfigError(f"unknown action kind {str(value)!r}: use one of {valid}") from None
    if kind not in approvable:
        raise ConfigError(f"action kind {kind.value!r} cannot be pre-approved: use one of {valid}")
    return kind
