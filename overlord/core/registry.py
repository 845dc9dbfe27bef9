"""Projects by name: case-insensitive, unique-prefix and shared-prefix-stripped lookup."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from overlord.core.config import Config, ProjectConfig
from overlord.errors import ProjectLookupError

_SEPARATORS = re.compile(r"[-_.]")


def _shared_prefix(names: list[str]) -> str:
    """The prefix all names share, cut after a separator ("nebulus-core", "nebulus-app" → "nebulus-")."""
    if len(names) < 2:
        return ""
    common = os.path.commonprefix([n.lower() for n in names])
    cut = max(common.rfind(sep) for sep in "-_.")
    return common[: cut + 1] if cut >= 0 else ""


def _short(name: str) -> str:
    """The name without its first segment ("nebulus-core" → "core")."""
    parts = _SEPARATORS.split(name.lower(), maxsplit=1)
    return parts[1] if len(parts) == 2 else name.lower()


class Registry:
    """The configured projects, looked up the way people type them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.names = list(config.projects)
        self._prefix = _shared_prefix(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.config.projects

    def get(self, name: str) -> ProjectConfig:
        return self.config.projects[self.resolve(name)]

    def resolve(self, query: str) -> str:
        """The one project ``query`` names, or ``ProjectLookupError`` listing the candidates."""
        wanted = query.strip().lower()
        if not wanted:
            raise ProjectLookupError("empty project name", self._known())
        for matcher in (
            lambda n: n.lower() == wanted,
            lambda n: n.lower().removeprefix(self._prefix) == wanted,
            lambda n: _short(n) == wanted,
            lambda n: n.lower().startswith(wanted),
            lambda n: n.lower().removeprefix(self._prefix).startswith(wanted),
            lambda n: _short(n).startswith(wanted),
        ):
            found = [n for n in self.names if matcher(n)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ProjectLookupError(
                    f"project name {query!r} is ambiguous: it could be {', '.join(sorted(found))}",
                    "type more of the name",
                )
        raise ProjectLookupError(f"unknown project {query!r}", self._known())

    def resolve_all(self, queries: Iterable[str]) -> list[str]:
        """Resolve several names, keeping the order given and dropping repeats."""
        out: list[str] = []
        for query in queries:
            name = self.resolve(query)
            if name not in out:
                out.append(name)
        return out

    def _known(self) -> str:
        return f"known projects: {', '.join(sorted(self.names)) or 'none (add some to the config)'}"
