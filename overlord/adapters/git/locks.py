"""The per-repository lock: steps that touch one repository never run at once (SPEC §3).

The lock file lives in the repository's common git directory (``git rev-parse
--git-common-dir``), never in the work tree: a linked worktree or a submodule, whose
``.git`` is a file, keeps a clean tree, and every worktree of one repository shares the
one lock.

In distributed mode (a task of an app on a shared Redis broker runs in this thread) the
lock is also a Redis lease, ``overlord:repo:<common dir>`` (the endpoint slots' machinery,
one holder, renewed while held), so workers on different machines sharing a workspace
never act on one repository at once; a killed worker's lease runs out after
``defaults.LOST_WORKER_SECONDS``. Embedded mode keeps the local lock only.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from overlord import defaults
from overlord.adapters.git.git import Git
from overlord.errors import OverlordError, RepoNotFound
from overlord.routing.semaphore import Semaphore

log = logging.getLogger(__name__)

LOCK_NAME = "overlord.lock"
#: Redis key prefix of the repositories' leases (distributed mode).
PREFIX = "overlord:repo:"


class Lease(Semaphore):
    """A lease of one holder renewed every ``defaults.HEARTBEAT`` seconds (not lease/3)."""

    @property
    def beat_interval(self) -> float:
        return defaults.HEARTBEAT


#: work tree → its lock file (a repository's common directory does not move)
_LOCK_FILES: dict[Path, Path] = {}


def lock_file(path: Path) -> Path:
    """Where the lock of the repository at ``path`` lives."""
    found = _LOCK_FILES.get(path)
    if found is None:
        dot_git = path / ".git"
        if dot_git.is_dir() and not (dot_git / "commondir").exists():
            common = dot_git  # a plain checkout: no need to ask git
        else:
            try:
                out = Git(path).run("rev-parse", "--path-format=absolute", "--git-common-dir")
            except OverlordError:
                raise RepoNotFound(
                    f"{path}: cannot lock the repository", "check the project's path"
                ) from None
            common = Path(out)
        found = _LOCK_FILES[path] = common / LOCK_NAME
    return found


@contextmanager
def repo_lock(path: Path | None) -> Iterator[None]:
    """Serialise steps on one repository across threads, processes, plans and (in
    distributed mode) machines."""
    if path is None:
        yield
        return
    with _shared_lease(lock_file(Path(path))), _local_lock(path):
        yield


@contextmanager
def _shared_lease(file: Path) -> Iterator[None]:
    from overlord.routing.broker import _task_broker

    url = _task_broker()
    if not url or not url.startswith(("redis://", "rediss://")):
        yield  # embedded mode, or not inside a task
        return
    import uuid

    from overlord.routing.broker import client

    lease = Lease(client(url), str(file.parent), 1, defaults.LOST_WORKER_SECONDS, prefix=PREFIX)
    with lease.hold(token=uuid.uuid4().hex):
        yield


@contextmanager
def _local_lock(path: Path) -> Iterator[None]:
    try:
        handle = os.open(lock_file(Path(path)), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        raise RepoNotFound(
            f"{path}: cannot lock the repository", "check the project's path"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)
