"""What a kind module declares (``Kind``), and what its steps get to work with.

A step's ``Action`` has four parts:
- ``prepare`` checks the repository and returns what the undo needs (recorded before acting);
- ``done`` tells, from that record and the repository, whether the step already acted
  (so a redelivered step does not act twice);
- ``run`` acts and returns an output text;
- ``undo`` puts every ref it moved back where the record says.
Every action that checks out a branch returns to the branch that was checked out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from overlord.adapters.git.git import Git
from overlord.core.config import ActionKind, Config, ProjectConfig

if TYPE_CHECKING:
    from overlord.core.intent import FormContext, Intent
    from overlord.core.plan import DispatchPlan, DispatchStep
    from overlord.core.plan_builder import PlanBuilder
    from overlord.routing.endpoints import Known
Undo = dict[str, Any]


@dataclass(frozen=True)
class Traits:
    """What an action kind does to a repository; the scope and the autonomy policy
    derive a plan's risk from them."""

    read_only: bool
    destructive: bool
    reversible: bool
    affects_remote: bool


@dataclass
class Context:
    """What a step's action works with: the configuration, its plan and the step."""

    config: Config
    plan_id: str
    step: DispatchStep

    @property
    def project(self) -> ProjectConfig:
        assert self.step.project is not None
        return self.config.projects[self.step.project]

    @property
    def git(self) -> Git:
        return Git(self.project.path)

    @property
    def params(self) -> dict[str, Any]:
        return self.step.params


@dataclass(frozen=True)
class Action:
    prepare: Callable[[Context], Undo]
    run: Callable[[Context, Undo], str]
    done: Callable[[Context, Undo], bool]
    undo: Callable[[Context, Undo], str]


@dataclass(frozen=True)
class Form:
    """One instruction form: a regular expression matched against the whole normalised
    text (case-insensitive), and what builds the ``Intent`` from its match."""

    pattern: str
    build: Callable[[re.Match[str], FormContext], Intent]


#: Adds the steps of an intent on one of its projects (the planner builds the plan).
AddSteps = Callable[["PlanBuilder", "Intent", str], None]
#: Builds the whole plan of an intent (kinds that plan across projects themselves), with
#: the forced tier and what is known of the model endpoints (``routing.Known``).
PlanIntent = Callable[["Intent", Config, "str | None", "Known | None"], "DispatchPlan"]


@dataclass(frozen=True)
class Kind:
    """Everything about one action kind (``overlord/kinds/<name>.py`` declares ``KIND``).

    ``action`` may be a function returning the ``Action``, for a kind whose code needs
    infrastructure the planner must not import. A kind people ask for has ``forms``, the
    ``help`` texts that show them, and ``add_steps`` (or ``plan``); a kind only plans make
    says so in ``planned_by``.
    """

    name: ActionKind
    traits: Traits
    #: Seconds a step is expected to take until a run on its project is remembered.
    estimate: float
    action: Action | Callable[[], Action]
    forms: tuple[Form, ...] = ()
    #: The forms as people read them: ``--help``, refusals, the translation prompt.
    help: tuple[str, ...] = ()
    #: Where this kind's forms sit in the parser's table and the help (lower first).
    order: int = 50
    add_steps: AddSteps | None = None
    plan: PlanIntent | None = None
    #: Why the kind has no forms: what makes its steps.
    planned_by: str = ""
    #: Its steps run on a model endpoint: planning needs the endpoints' health.
    routes_to_models: bool = False
    #: Whether ``autonomy.pre_approved`` may name it.
    pre_approvable: bool = True
    #: Needs no approval at any level (it does nothing).
    always_approved: bool = False
    #: Whether its durations are remembered (False: they say nothing about the next run).
    learns_duration: bool = True

    def load_action(self) -> Action:
        return self.action if isinstance(self.action, Action) else self.action()


def nothing(ctx: Context, undo: Undo) -> str:
    """The undo of a step that changes nothing."""
    return "nothing to undo"


def never(ctx: Context, undo: Undo) -> bool:
    """``done`` of a step that is safe to run again (read-only)."""
    return False


def empty(ctx: Context) -> Undo:
    """``prepare`` of a step that records nothing."""
    return {}
