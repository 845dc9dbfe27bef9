"""Steps that commit on a project's branch (bump-version, update-dependency, ...), and
the rewind every branch-moving step's undo uses.

``commit_action(message, edit)`` is the whole action of such a kind: ``prepare`` refuses
a dirty tree and records the branch's commit (``before``); ``run`` checks the branch out,
lets ``edit`` change files, commits them with ``message`` (or puts them back when the
commit is refused) and records the new commit (``after``); ``done`` knows the commit by
its subject; ``undo`` puts the branch back at ``before`` — only while it is still where
the step left it, never over a person's later commits or uncommitted edits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from overlord.adapters.git.checkout import (
    commit_or_restore,
    on_branch,
    require_branch,
    require_clean,
)
from overlord.errors import DirtyTree, GitError
from overlord.kinds.base import Action, Context, Undo


@dataclass
class Edit:
    """What an edit did: the files it changed (none: nothing to commit) and what to say
    about it (the step's output, followed by the commit when there is one)."""

    says: str
    files: list[Path] = field(default_factory=list)


def relative(ctx: Context, files: list[Path]) -> list[str]:
    """``files`` relative to the project (as ``git add`` takes them)."""
    root = ctx.project.path
    return [str(f.relative_to(root)) if f.is_absolute() else str(f) for f in files]


def done(ctx: Context, undo: Undo) -> bool:
    """The branch moved from ``before`` to a commit with the step's subject."""
    git = ctx.git
    tip = git.branch_sha(undo["branch"])
    return (
        tip is not None
        and tip != undo["before"]
        and git.last_commit(tip)["subject"] == undo["message"]
    )


def rewind(ctx: Context, undo: Undo, done: Callable[[Context, Undo], bool]) -> str:
    """Put the step's branch back at ``before`` — only if it is still where the step left
    it (``after``), and never over uncommitted work: a person's later commits or edits are
    never thrown away by a rollback; the undo fails and says what to do instead."""
    git = ctx.git
    branch, before = undo["branch"], undo["before"]
    tip = git.branch_sha(branch)
    if tip == before:
        return f"{branch} already at {before[:10]}"
    after = undo.get("after") or (tip if tip and done(ctx, undo) else None)
    if tip is None or tip != after:
        raise GitError(
            f"{git.path}: {branch} moved since this plan changed it (now at "
            f"{(tip or 'nothing')[:10]}); not rolling it back",
            f"put it back by hand if wanted: git -C {git.path} branch -f {branch} {before[:10]}",
        )
    if git.current_branch() == branch:
        if git.is_dirty():
            raise DirtyTree(
                f"{git.path}: uncommitted changes on {branch}; not rolling it back",
                "commit or stash them, then run `overlord cancel` (or `resume`) again",
            )
        git.reset_hard(before)
    else:
        git.run("update-ref", f"refs/heads/{branch}", before, after)  # only if still at after
    return f"{branch} back at {before[:10]}"


def undo(ctx: Context, record: Undo) -> str:
    return rewind(ctx, record, done)


def commit_action(message: Callable[[Context], str], edit: Callable[[Context], Edit]) -> Action:
    """The action of a kind that edits files on ``params["branch"]`` and commits them."""

    def prepare(ctx: Context) -> Undo:
        git = ctx.git
        require_clean(git)
        branch = ctx.params["branch"]
        return {"branch": branch, "before": require_branch(git, branch), "message": message(ctx)}

    def run(ctx: Context, record: Undo) -> str:
        git = ctx.git
        with on_branch(git, record["branch"]):
            change = edit(ctx)
            if not change.files:
                return change.says
            paths = relative(ctx, change.files)
            sha = record["after"] = commit_or_restore(git, paths, record["message"])
        return f"{change.says}: {sha[:10]}"

    return Action(prepare, run, done, undo)
