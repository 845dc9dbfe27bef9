"""Git names resolved exactly, and the environment git runs in (SPEC §4.6).

A branch name given by a person (a task's text, ``--source``/``--target``, the config)
is checked with ``git check-ref-format --branch`` and then only ever used as
``refs/heads/<name>``; a tag only as ``refs/tags/<name>``. A revision expression where
a branch is expected (``main~0``, ``HEAD``, ``@{-1}``, ``-x``) is refused, so a tag that
shares a branch's name, or an expression that resolves to a commit, never stands in for
the branch.

Every git command Overlord runs (and every command it starts in a repository) gets an
environment without the variables that point git at a repository, an index or an
object store: run from a git hook or a shell with ``GIT_DIR`` set, Overlord still reads
and writes the project's own repository.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping

from overlord import defaults
from overlord.errors import BadRefName

#: Variables that make git act on another repository, index, object store or namespace
#: than the one in the directory it runs in (``git rev-parse --local-env-vars`` and the
#: discovery ones). They are dropped from what Overlord passes to git and to commands.
REPOSITORY_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_INDEX_VERSION",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_GRAFT_FILE",
        "GIT_SHALLOW_FILE",
        "GIT_REPLACE_REF_BASE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_QUARANTINE_PATH",
    }
)


def without_repository_vars(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without any variable that locates a repository (see ``REPOSITORY_VARS``)."""
    return {k: v for k, v in env.items() if k not in REPOSITORY_VARS}


@functools.lru_cache(maxsize=1024)
def _branch_name_ok(name: str) -> bool:
    if not name or name == "@" or name.startswith("-"):
        return False
    try:
        proc = subprocess.run(
            ["git", "check-ref-format", "--branch", name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=without_repository_vars(os.environ),
            cwd="/",  # outside any repository: ``@{-1}`` cannot be expanded
            timeout=defaults.REF_CHECK_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    # ``--branch`` expands ``@{-N}``; anything but the name itself coming back is refused
    return proc.returncode == 0 and proc.stdout.strip() == name


def check_branch(name: str) -> str:
    """``name`` when it is a plain branch name; else ``BadRefName`` (exit 2)."""
    if not isinstance(name, str) or not _branch_name_ok(name):
        raise BadRefName(
            f"{name!r} is not a branch name",
            "name a branch exactly (e.g. main or feature/x), not a revision expression",
        )
    return name


def branch_ref(name: str) -> str:
    """``refs/heads/<name>`` for a checked branch name."""
    return f"refs/heads/{check_branch(name)}"


def tag_ref(name: str) -> str:
    """``refs/tags/<name>`` for a tag name git accepts."""
    if not name or name.startswith("-") or not _tag_name_ok(name):
        raise BadRefName(f"{name!r} is not a tag name", "pick a version like 1.2.3")
    return f"refs/tags/{name}"


@functools.lru_cache(maxsize=1024)
def _tag_name_ok(name: str) -> bool:
    try:
        proc = subprocess.run(
            ["git", "check-ref-format", f"refs/tags/{name}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=without_repository_vars(os.environ),
            cwd="/",
            timeout=defaults.REF_CHECK_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
