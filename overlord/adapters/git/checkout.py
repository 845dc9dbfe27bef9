"""The person's checkout: what a step checks before touching it, and how it touches it.

A step refuses a dirty tree, a missing branch or a half-done merge; it switches branches
only for the duration of its work and always goes back (and ``restore_branches`` puts
every repository of a plan back on its branch at its end); a commit that a hook refuses
leaves the files as they were; commands it starts are in ``overlord.adapters.commands.proc``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from overlord.adapters.git import head_file
from overlord.adapters.git.git import Git
from overlord.adapters.git.locks import repo_lock
from overlord.errors import DirtyTree, GitError, MissingBranch, OverlordError

if TYPE_CHECKING:
    from overlord.core.config import Config
    from overlord.core.plan import DispatchPlan


def require_clean(git: Git) -> None:
    operation = git.operation_in_progress()
    if operation:
        raise DirtyTree(
            f"{git.path}: a {operation} is in progress", f"finish or abort the {operation} first"
        )
    if git.is_dirty():
        raise DirtyTree(
            f"{git.path}: the working tree has uncommitted changes", "commit or stash them first"
        )


def require_branch(git: Git, branch: str) -> str:
    sha = git.branch_sha(branch)  # a checked name, exactly refs/heads/<branch>
    if sha is None:
        raise MissingBranch(f"{git.path}: no branch {branch!r}", "create it or pass another branch")
    return sha


def head_name(git: Git) -> str:
    """The checked-out branch, or the commit when detached; the branch is read from the
    HEAD file when it plainly names one (``head_file``: no git process, and this is asked
    before and after every step and at a plan's start and end)."""
    branch = head_file.branch(git.path)
    return branch or git.current_branch() or git.head()


@contextmanager
def on_branch(git: Git, branch: str, *, current: str | None = None) -> Iterator[None]:
    """Check out ``branch`` for the block, then go back to what was checked out
    (``current``, when the caller has just asked, saves asking git again)."""
    original = current if current is not None else head_name(git)
    if original != branch:
        git.checkout(branch)
    try:
        yield
    finally:
        if head_name(git) != original:
            git.checkout(original)


def commit_or_restore(git: Git, paths: list[str], message: str) -> str:
    """Commit ``paths``; when the commit is refused (a hook, ...), put them back as they
    were at HEAD so the failed step leaves the working tree clean."""
    try:
        return git.commit_paths(paths, message)
    except GitError:
        git.run("reset", "-q", "HEAD", "--", *paths, check=False)
        git.run("checkout", "-q", "HEAD", "--", *paths, check=False)
        raise


def restore_branches(config: Config, plan: DispatchPlan) -> list[str]:
    """Check out, in every touched repo, the branch that was checked out before the plan
    (after it succeeded, and after its rollback); what could not be, one line each. The
    repositories are checked at once: the plan settles only after this, and each one
    costs a git call or two."""
    wanted = [
        (project, original)
        for project, original in plan.original_branches.items()
        if original is not None and project in config.projects
    ]

    def restore(project: str, original: str) -> str | None:
        git = Git(config.projects[project].path)
        try:
            with repo_lock(git.path):
                if head_name(git) != original:
                    git.checkout(original)
        except OverlordError as exc:
            return f"{project}: {exc.message}"
        return None

    if len(wanted) < 2:
        outcomes = [restore(*item) for item in wanted]
    else:
        with ThreadPoolExecutor(min(8, len(wanted)), thread_name_prefix="restore") as pool:
            outcomes = list(pool.map(lambda item: restore(*item), wanted))
    return [problem for problem in outcomes if problem is not None]
