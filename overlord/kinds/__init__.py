"""Action kinds (SPEC §3): one module per kind, declaring everything about it.

The module ``overlord/kinds/<name>.py`` *is* the kind ``<name>`` (``_`` read as ``-``:
``run_tests.py`` is ``run-tests``). Its ``KIND`` (a ``kinds.base.Kind``) says what the
kind does to a repository (traits), how long a step is expected to take, the instructions
that ask for it and how they become steps, and how a step prepares, runs, tells that it
already ran, and is undone. ``kinds.registry`` collects them; the parser, the planner,
the scope and the executor read the registry. Adding a kind is adding a module here
(and its test); ``tests/integration/test_kinds.py`` checks that every kind is complete.

``ActionKind`` enumerates the kinds from the file names alone (no kind is imported), so
the configuration validates ``pre_approved`` without loading any kind's code.
"""

from __future__ import annotations

import pkgutil
from enum import StrEnum
from typing import TYPE_CHECKING

#: Modules of this package that are machinery, not kinds.
MACHINERY = frozenset({"base", "registry", "commit_step"})


def kind_modules() -> list[str]:
    """The names of the kind modules, sorted (``run_tests``, ``tag`` ...)."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if m.name not in MACHINERY and not m.name.startswith("_")
    )


if TYPE_CHECKING:

    class ActionKind(StrEnum):
        """What mypy sees: the kinds the code names as ``ActionKind.X``. At run time the
        members are the modules of this package; a new kind needs no line here."""

        BUMP_VERSION = "bump-version"
        CLEAN_STALE_BRANCHES = "clean-stale-branches"
        MERGE = "merge"
        MINION = "minion"
        NOOP = "noop"
        PUSH = "push"
        RUN_TESTS = "run-tests"
        SCAN = "scan"
        TAG = "tag"
        UPDATE_DEPENDENCY = "update-dependency"

else:
    ActionKind = StrEnum(
        "ActionKind",
        [(name.upper(), name.replace("_", "-")) for name in kind_modules()],
        module=__name__,
        qualname="ActionKind",
    )
    ActionKind.__doc__ = "The action kinds: one member per module of ``overlord.kinds``."
