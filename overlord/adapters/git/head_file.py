"""The checked-out branch read from a repository's ``HEAD`` file, without running git.

A run-tests step asks for the branch before and after its command, and a plan asks every
repository at its start and again at its end: a git process costs a few milliseconds each
time, on the plan's critical path. In the plain case the file says what ``git
symbolic-ref HEAD`` would: the path's own ``.git`` (a directory, or a linked worktree's
``gitdir:`` file), everything owned by this user (otherwise git's ``safe.directory``
check decides), a regular file holding a ref under ``refs/heads/``. Anything else (a
detached HEAD, reftable's ``.invalid``, another owner, no object store, an odd name) is
left to git: ``branch`` answers None.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_BRANCH = "ref: refs/heads/"


def branch(path: Path) -> str | None:
    """The branch checked out in the repository at ``path`` as its HEAD file plainly says;
    None when git must be asked."""
    head = read(path)
    if head is None:
        return None
    name = head.removeprefix(_BRANCH)
    return name if name != head and _plain(name) else None


def read(path: Path) -> str | None:
    """The text of the HEAD file of the repository at ``path`` in the plain case; None
    whenever anything is unusual."""
    dotgit = path / ".git"
    try:
        gitdir = git_dir(path)
        if gitdir is None:
            return None
        if not ((gitdir / "objects").is_dir() or (gitdir / "commondir").is_file()):
            return None  # not a repository as git sees one: let git say so
        head = gitdir / "HEAD"
        uid = os.getuid()
        for owned in (path, dotgit, gitdir):
            if os.stat(owned).st_uid != uid:
                return None
        if not stat.S_ISREG(os.lstat(head).st_mode) or os.stat(head).st_uid != uid:
            return None
        return head.read_text(errors="strict").strip()
    except (OSError, ValueError):
        return None


def git_dir(path: Path) -> Path | None:
    """The git directory of the work tree at ``path`` as git finds it: ``.git`` itself, or
    where a linked worktree's one-line ``gitdir:`` file points; None for anything else."""
    dotgit = path / ".git"
    try:
        if dotgit.is_dir():
            return dotgit
        text = dotgit.read_text(errors="strict")
    except (OSError, ValueError):
        return None
    if not text.startswith("gitdir: ") or text.count("\n") > 1:
        return None
    return path / text.removeprefix("gitdir: ").strip()


def _plain(name: str) -> bool:
    """A branch name that needs no further look (git wrote it, so its rules hold)."""
    return (
        bool(name)
        and name != ".invalid"
        and name.isprintable()
        and not any(c in name for c in " \\~^:?*[")
        and ".." not in name
    )
