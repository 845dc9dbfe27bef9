"""The dependency graph of projects, ordered with ``graphlib``."""

from __future__ import annotations

from collections.abc import Iterable
from graphlib import TopologicalSorter

from overlord.core.config import Config


class DependencyGraph:
    """``depends_on`` edges: a project points at the projects it needs."""

    def __init__(self, config: Config) -> None:
        self.depends_on: dict[str, list[str]] = {
            name: list(p.depends_on) for name, p in config.projects.items()
        }

    def upstream(self, name: str) -> list[str]:
        """The projects ``name`` depends on directly."""
        return list(self.depends_on[name])

    def downstream(self, name: str) -> list[str]:
        """The projects that depend on ``name`` directly, sorted by name."""
        return sorted(n for n, deps in self.depends_on.items() if name in deps)

    def affected_by(self, name: str) -> list[str]:
        """Everything downstream of ``name`` (transitively), in a valid build order."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            for child in self.downstream(todo.pop()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return [n for n in self.order() if n in seen]

    def order(self, names: Iterable[str] | None = None) -> list[str]:
        """A topological order (dependencies first) of ``names`` (default: all projects).

        Ties are broken by name so the order is stable from run to run.
        """
        keep = set(self.depends_on if names is None else names)
        sorter = TopologicalSorter({n: set(self.depends_on[n]) & keep for n in keep})
        sorter.prepare()
        out: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            out.extend(ready)
            sorter.done(*ready)
        return out

    def edges(self) -> list[tuple[str, str]]:
        """(dependent, dependency) pairs, sorted."""
        return sorted((n, d) for n, deps in self.depends_on.items() for d in deps)

    def as_dict(self) -> dict[str, object]:
        return {
            "projects": self.order(),
            "depends_on": {n: sorted(self.depends_on[n]) for n in self.order()},
            "dependents": {n: self.downstream(n) for n in self.order()},
        }
