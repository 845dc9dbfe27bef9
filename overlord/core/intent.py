"""What an instruction asks for (``Intent``), and the pieces kind modules build it from.

A kind's parser forms (``overlord.kinds``) turn a match into an ``Intent`` with these
helpers: a project LIST resolved (``projects``), a version checked (``version``), a
dependency named (``dependency``), and the regular-expression pieces the forms share.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field

from overlord.core.registry import Registry
from overlord.errors import ParseError, ProjectLookupError, VersionError
from overlord.kinds import ActionKind
from overlord.routing.tiers import Complexity, TaskType

if TYPE_CHECKING:

    class IntentKind(StrEnum):
        """What mypy sees; at run time one member per ``ActionKind`` and ``RELEASE``."""

        RELEASE = "release"

else:
    IntentKind = StrEnum(
        "IntentKind",
        [("RELEASE", "release"), *((k.name, k.value) for k in ActionKind)],
        module=__name__,
        qualname="IntentKind",
    )
    IntentKind.__doc__ = (
        "What an intent asks for: a release, or steps of an action kind (whose module plans it)."
    )

LIST_HELP = "LIST is P, P and Q, P, Q and R, or all projects"

#: Regular-expression pieces of the forms: a project or branch name (no spaces, no
#: commas), a version, a project LIST, and the words that introduce a LIST.
WORD = r"[^ ,]+"
VERSION = r"(?P<version>[^ ]+)"
LIST = r"(?P<list>.+)"
TO = r"(?:in|across|for|on)"

_ALL = re.compile(r"all|all (?:the )?(?:projects|repos)|every project|everything", re.I)
_DIST_NAME = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9]", re.I)


class Intent(BaseModel):
    """What an instruction asks for, with project names resolved."""

    model_config = ConfigDict(extra="forbid")

    kind: IntentKind
    text: str
    projects: list[str] = Field(default_factory=list)
    source: str | None = None
    target: str | None = None
    version: str | None = None
    dependency: str | None = None
    task_type: TaskType | None = None
    complexity: Complexity | None = None
    instruction: str | None = None
    branch: str | None = None
    #: What only one kind's forms say (its ``add_steps`` reads them): a kind whose
    #: instructions carry something of their own needs no new field here.
    params: dict[str, str] = Field(default_factory=dict)

    @property
    def project(self) -> str | None:
        """The first (for single-project forms: the only) project."""
        return self.projects[0] if self.projects else None


@dataclass(frozen=True)
class FormContext:
    """What a form's builder gets besides its match."""

    registry: Registry
    text: str
    complexity: Complexity | None


Builder = Callable[[re.Match[str], FormContext], Intent]


def version(raw: str) -> str:
    """A PEP 440 version, normalised; ``VersionError`` otherwise."""
    try:
        return str(Version(raw))
    except InvalidVersion:
        raise VersionError(
            f"invalid version {raw!r}: not a PEP 440 version",
            "use a version like 1.2.3, v1.2.3 or 1.2.3rc1",
        ) from None


def is_all(text: str) -> bool:
    """Whether a LIST says every project (``all``, ``all projects``, ``everything`` ...)."""
    return bool(_ALL.fullmatch(text))


def projects(text: str, registry: Registry) -> list[str]:
    """Resolve a LIST: ``P``, ``P and Q``, ``P, Q, and R`` or ``all projects``."""
    if is_all(text):
        if not registry.names:
            raise ParseError("no projects are configured", "add projects to the config")
        return list(registry.names)
    tokens = [t for t in re.split(r"[ ,]+", text) if t and t.lower() not in ("and", "&")]
    if not tokens:
        raise ParseError(f"no project named in {text!r}", LIST_HELP)
    return registry.resolve_all(tokens)


def dependency(raw: str, registry: Registry) -> str:
    """The project DEP names (by name or distribution), else the raw distribution name.

    Only whole-name matches count ("core" finds ``nebulus-core``), never a bare prefix,
    so an outside package like ``requests`` is not mistaken for ``requests-helper``.
    """
    if not _DIST_NAME.fullmatch(raw):
        raise ParseError(f"{raw!r} is not a package name", "e.g. update requests to 2.32 in app")
    wanted = canonicalize_name(raw)
    for name in registry.names:
        dist = registry.config.projects[name].distribution
        if wanted in (canonicalize_name(name), canonicalize_name(dist)):
            return name
    try:
        name = registry.resolve(raw)
    except ProjectLookupError:
        return raw
    return name if canonicalize_name(name).endswith("-" + wanted) else raw


def listed(kind: ActionKind) -> Builder:
    """A builder for ``... LIST`` forms: the intent of ``kind`` on the LIST's projects."""

    def build(m: re.Match[str], ctx: FormContext) -> Intent:
        return Intent(
            kind=IntentKind(kind), text=ctx.text, projects=projects(m["list"], ctx.registry)
        )

    return build


def everywhere(kind: ActionKind) -> Builder:
    """A builder for forms without a LIST: the intent of ``kind`` on every project."""

    def build(m: re.Match[str], ctx: FormContext) -> Intent:
        return Intent(kind=IntentKind(kind), text=ctx.text, projects=projects("all", ctx.registry))

    return build


def versioned(kind: IntentKind) -> Builder:
    """A builder for ``... P VERSION`` forms (``project`` and ``version`` groups)."""

    def build(m: re.Match[str], ctx: FormContext) -> Intent:
        project = ctx.registry.resolve(m["project"])
        return Intent(kind=kind, text=ctx.text, projects=[project], version=version(m["version"]))

    return build
