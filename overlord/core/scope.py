"""What a plan touches (SPEC §3): projects, branches, and how risky it is — from the
traits each action kind declares (``overlord.kinds``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, Field

from overlord.core.config import ActionKind
from overlord.kinds import registry as kind_registry


class Impact(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return ["low", "medium", "high"].index(self.value)


@dataclass(frozen=True)
class Touch:
    """One action on one project (and the branches it reads or moves)."""

    kind: ActionKind
    project: str
    branches: tuple[str, ...] = ()


class ActionScope(BaseModel):
    projects: list[str] = Field(default_factory=list)
    written_projects: list[str] = Field(default_factory=list)
    branches: list[str] = Field(default_factory=list)
    read_only: bool = True
    destructive: bool = False
    reversible: bool = True
    affects_remote: bool = False
    estimated_impact: Impact = Impact.LOW

    @classmethod
    def of(cls, touches: Iterable[Touch], shared_libraries: Iterable[str] = ()) -> ActionScope:
        touches = list(touches)
        traits = [kind_registry.traits(t.kind) for t in touches]
        projects = sorted({t.project for t in touches})
        written = sorted(
            {t.project for t, tr in zip(touches, traits, strict=True) if not tr.read_only}
        )
        scope = cls(
            projects=projects,
            written_projects=written,
            branches=sorted({f"{t.project}:{b}" for t in touches for b in t.branches}),
            read_only=all(tr.read_only for tr in traits),
            destructive=any(tr.destructive for tr in traits),
            reversible=all(tr.reversible for tr in traits),
            affects_remote=any(tr.affects_remote for tr in traits),
        )
        scope.estimated_impact = _impact(scope, set(shared_libraries))
        return scope

    @property
    def local(self) -> bool:
        return not self.affects_remote


def _impact(scope: ActionScope, shared: set[str]) -> Impact:
    if scope.affects_remote or not scope.reversible or len(scope.written_projects) > 3:
        return Impact.HIGH
    if scope.destructive or len(scope.written_projects) > 1 or shared & set(scope.written_projects):
        return Impact.MEDIUM
    return Impact.LOW
