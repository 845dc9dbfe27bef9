"""Which model tier a kind of work needs (SPEC §4.5, the seed table).

Pure: no I/O, no imports beyond the configuration's ``Tier``.

| task type                         | low        | medium     | high        |
|-----------------------------------|------------|------------|-------------|
| format, lint, boilerplate         | local      | local      | local       |
| feature                           | local      | local      | cloud-fast  |
| review                            | cloud-fast | cloud-fast | cloud-fast  |
| debugging, architecture, planning | cloud-fast | cloud-fast | cloud-heavy |

Git chores need no model; they never reach this table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from overlord.core.config import Tier
from overlord.errors import PlanError


class TaskType(StrEnum):
    FORMAT = "format"
    LINT = "lint"
    BOILERPLATE = "boilerplate"
    FEATURE = "feature"
    REVIEW = "review"
    DEBUGGING = "debugging"
    ARCHITECTURE = "architecture"
    PLANNING = "planning"


class Complexity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


#: The order in which an unhealthy or saturated tier falls back to the next.
FALLBACK_ORDER: list[Tier] = [Tier.LOCAL, Tier.CLOUD_FAST, Tier.CLOUD_HEAVY]

_MECHANICAL = frozenset({TaskType.FORMAT, TaskType.LINT, TaskType.BOILERPLATE})
_REASONING = frozenset({TaskType.DEBUGGING, TaskType.ARCHITECTURE, TaskType.PLANNING})
#: Work that is better done by the largest local model available (seed table: "prefer 30B").
_PREFER_LARGE = frozenset({TaskType.BOILERPLATE, TaskType.FEATURE})


E = TypeVar("E", TaskType, Complexity, Tier)


def _member(kind: type[E], value: E | str, what: str) -> E:
    """``value`` as a member of ``kind``; an unknown name raises ``PlanError`` listing them."""
    try:
        return kind(str(value).strip().lower())
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise PlanError(f"unknown {what} {value!r}", f"use one of: {known}") from None


def task_type(value: TaskType | str) -> TaskType:
    """``value`` as a ``TaskType``; an unknown name raises ``PlanError``."""
    return _member(TaskType, value, "task type")


def complexity(value: Complexity | str) -> Complexity:
    """``value`` as a ``Complexity``; an unknown name raises ``PlanError``."""
    return _member(Complexity, value, "complexity")


def tier(value: Tier | str) -> Tier:
    """``value`` as a ``Tier`` (e.g. from ``--tier``); an unknown name raises ``PlanError``."""
    return _member(Tier, value, "model tier")


def tier_for(kind: TaskType | str, level: Complexity | str = Complexity.MEDIUM) -> Tier:
    """The tier the seed table gives for a task type and complexity."""
    kind = task_type(kind)
    level = complexity(level)
    if kind in _MECHANICAL:
        return Tier.LOCAL
    if kind is TaskType.FEATURE:
        return Tier.CLOUD_FAST if level is Complexity.HIGH else Tier.LOCAL
    if kind in _REASONING and level is Complexity.HIGH:
        return Tier.CLOUD_HEAVY
    return Tier.CLOUD_FAST  # review, and reasoning work below high complexity


def prefers_large(kind: TaskType | str) -> bool:
    """True when the work should go to the largest model of its tier (boilerplate, feature)."""
    return task_type(kind) in _PREFER_LARGE


def fallbacks(start: Tier | str) -> list[Tier]:
    """``start`` then every later tier of ``FALLBACK_ORDER`` (a tier never falls back down)."""
    start = tier(start)
    return FALLBACK_ORDER[FALLBACK_ORDER.index(start) :]
