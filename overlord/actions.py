"""Direct git steps and their compensation (SPEC §3 table).

Each action has four parts:
- ``prepare`` checks the repository and returns what the undo needs (recorded before acting);
- ``done`` tells, from that record and the repository, whether the step already acted
  (so a redelivered step does not act twice);
- ``run`` acts and returns an output text;
- ``undo`` puts every ref it moved back where the record says.
Every action that checks out a branch returns to the branch that was checked out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from overlord import defaults
from overlord.checkout import (
    commit_or_restore,
    on_branch,
    require_branch,
    require_clean,
)
from overlord.config import ActionKind, Config, ProjectConfig
from overlord.errors import DirtyTree, GitError, MissingBranch, StepFailed
from overlord.git import Git
from overlord.plan import DispatchStep
from overlord.refs import tag_ref
from overlord.test_step import tests_prepare, tests_run

Undo = dict[str, Any]


@dataclass
class Context:
    config: Config
    plan_id: str
    step: DispatchStep

    @property
    def project(self) -> ProjectConfig:
        assert self.step.project is not None
        return self.config.projects[self.step.project]

    @property
    def git(self) -> Git:
        return Git(self.project.path)

    @property
    def params(self) -> dict[str, Any]:
        return self.step.params


@dataclass(frozen=True)
class Action:
    prepare: Callable[[Context], Undo]
    run: Callable[[Context, Undo], str]
    done: Callable[[Context, Undo], bool]
    undo: Callable[[Context, Undo], str]


# --- helpers ------------------------------------------------------------------


def _branch_step_done(ctx: Context, undo: Undo) -> bool:
    git = ctx.git
    tip = git.branch_sha(undo["branch"])
    return (
        tip is not None
        and tip != undo["before"]
        and git.last_commit(tip)["subject"] == undo["message"]
    )


def _rewind(ctx: Context, undo: Undo, done: Callable[[Context, Undo], bool]) -> str:
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


def _branch_step_undo(ctx: Context, undo: Undo) -> str:
    return _rewind(ctx, undo, _branch_step_done)


def _branch_prepare(ctx: Context, message: str) -> Undo:
    git = ctx.git
    require_clean(git)
    branch = ctx.params["branch"]
    return {"branch": branch, "before": require_branch(git, branch), "message": message}


# --- merge --------------------------------------------------------------------


def _merge_prepare(ctx: Context) -> Undo:
    git = ctx.git
    require_clean(git)
    source, target = ctx.params["source"], ctx.params["target"]
    return {
        "branch": target,
        "before": require_branch(git, target),
        "source_sha": require_branch(git, source),
        "message": f"Merge branch '{source}' into {target}",
    }


def _merge_run(ctx: Context, undo: Undo) -> str:
    git = ctx.git
    with on_branch(git, undo["branch"]):
        new = git.merge_no_ff(ctx.params["source"], undo["message"])
    undo["after"] = new
    return f"merged {ctx.params['source']} into {undo['branch']}: {new[:10]}"


def _merge_done(ctx: Context, undo: Undo) -> bool:
    git = ctx.git
    tip = git.branch_sha(undo["branch"])
    if tip is None or tip == undo["before"]:
        return False
    parents = git.run("rev-list", "--parents", "-n", "1", tip).split()[1:]
    return parents == [undo["before"], undo["source_sha"]]


# --- tag ------------------------------------------------------------------------


def _tag_prepare(ctx: Context) -> Undo:
    git = ctx.git
    name, branch = ctx.params["name"], ctx.params.get("ref")
    if git.tag_exists(name):
        raise StepFailed(f"{git.path}: tag {name} already exists", "pick another version")
    remote = git.remote_named(ctx.project.remote)
    if remote is not None and f"refs/tags/{name}" in git.ls_remote(remote):
        raise StepFailed(
            f"{git.path}: tag {name} already exists on remote {remote}", "pick another version"
        )
    # the branch ``ref`` names (never a tag or commit that shares its name), else HEAD
    commit = git.branch_sha(branch) if branch else git.rev("HEAD")
    if commit is None:
        raise MissingBranch(f"{git.path}: no branch {branch!r} to tag")
    return {"tag": name, "commit": commit}


def _tag_run(ctx: Context, undo: Undo) -> str:
    message = ctx.params.get("message") or f"Release {undo['tag']}"
    ctx.git.tag_annotated(undo["tag"], message, undo["commit"])
    # the tag object the push will send (``overlord.tested``)
    undo["object"] = ctx.git.ref_target(f"refs/tags/{undo['tag']}")
    return f"tagged {undo['commit'][:10]} as {undo['tag']}"


def _tag_done(ctx: Context, undo: Undo) -> bool:
    return ctx.git.rev(tag_ref(undo["tag"])) == undo["commit"]


def _tag_undo(ctx: Context, undo: Undo) -> str:
    if _tag_done(ctx, undo):
        ctx.git.delete_tag(undo["tag"])
        return f"deleted tag {undo['tag']}"
    return f"tag {undo['tag']} already gone"


# --- bump-version / update-dependency -----------------------------------------


def _bump_prepare(ctx: Context) -> Undo:
    return _branch_prepare(ctx, f"Bump version to {ctx.params['version']}")


def _bump_run(ctx: Context, undo: Undo) -> str:
    from overlord import metadata

    git = ctx.git
    with on_branch(git, undo["branch"]):
        files = metadata.set_version(ctx.project.path, ctx.params["version"])
        if not files:
            return "version comes from tags: nothing to change"
        rel = [str(f.relative_to(ctx.project.path)) if f.is_absolute() else str(f) for f in files]
        sha = undo["after"] = commit_or_restore(git, rel, undo["message"])
    return f"set version {ctx.params['version']} in {', '.join(rel)}: {sha[:10]}"


def _update_prepare(ctx: Context) -> Undo:
    dep, version = ctx.params["dependency"], ctx.params["version"]
    return _branch_prepare(ctx, f"Update {dep} to {version}")


def _update_run(ctx: Context, undo: Undo) -> str:
    from overlord import metadata

    git = ctx.git
    dep, version = ctx.params["dependency"], ctx.params["version"]
    with on_branch(git, undo["branch"]):
        change = metadata.rewrite_pin(ctx.project.path, dep, version)
        if not change.changed:
            return f"pin of {dep} left alone: {change.reason}"
        path = (
            change.file.relative_to(ctx.project.path) if change.file.is_absolute() else change.file
        )
        sha = undo["after"] = commit_or_restore(git, [str(path)], undo["message"])
    return f"{', '.join(change.old)} -> {', '.join(change.new)}: {sha[:10]}"


# --- clean-stale-branches -----------------------------------------------------


def _clean_prepare(ctx: Context) -> Undo:
    from overlord.scanner import stale_branches

    git = ctx.git
    mains = [b for b in ("main", "master", "develop") if git.branch_exists(b)]
    days = int(ctx.params.get("days", ctx.config.dispatch.stale_branch_days))
    current = git.current_branch()
    stale = stale_branches(git, mains, days, current=current)
    return {"branches": {b.name: b.sha for b in stale if b.name != current}}


def _clean_run(ctx: Context, undo: Undo) -> str:
    git = ctx.git
    deleted = []
    for name, sha in undo["branches"].items():
        if name in defaults.PROTECTED_BRANCHES or name == git.current_branch():
            continue
        if git.rev(f"refs/heads/{name}") == sha:
            git.delete_branch(name)
            deleted.append(name)
    return f"deleted {len(deleted)} stale branch(es): {', '.join(deleted) or 'none'}"


def _clean_done(ctx: Context, undo: Undo) -> bool:
    return all(not ctx.git.branch_exists(name) for name in undo["branches"])


def _clean_undo(ctx: Context, undo: Undo) -> str:
    git = ctx.git
    restored = []
    for name, sha in undo["branches"].items():
        if not git.branch_exists(name):
            git.create_branch(name, sha)
            restored.append(name)
    return f"recreated {', '.join(restored) or 'nothing'}"


# --- push -----------------------------------------------------------------------


def _push_prepare(ctx: Context) -> Undo:
    """The object ids the plan left each ref at (what its tests ran on); refused when a
    branch moved since (``overlord.tested``)."""
    from overlord import tested

    git = ctx.git
    want = tested.refs_to_push(ctx.config, ctx.plan_id, ctx.step)
    remote = git.remote_named(ctx.project.remote)
    if remote is None:
        raise StepFailed(
            f"{git.path}: no git remote matches {ctx.project.remote!r}",
            f"add one (git -C {git.path} remote add origin URL) or fix `remote` in the config",
        )
    return {"remote": remote, "refs": want}


def _push_run(ctx: Context, undo: Undo) -> str:
    """``git push --atomic REMOTE <sha>:<ref> ...``: exactly the recorded objects."""
    refspecs = [f"{sha}:{ref}" for ref, sha in undo["refs"].items()]
    try:
        ctx.git.push_atomic(undo["remote"], refspecs)
    except GitError as exc:
        raise StepFailed(
            f"push of {ctx.project.name} to {undo['remote']} rejected: {exc.message}"
        ) from None
    pushed = ", ".join(f"{ref} ({sha[:10]})" for ref, sha in undo["refs"].items())
    return f"pushed {pushed} to {undo['remote']}"


def _push_done(ctx: Context, undo: Undo) -> bool:
    remote = ctx.git.ls_remote(undo["remote"])
    return all(remote.get(ref) == target for ref, target in undo["refs"].items())


# --- scan (read-only status, for scheduled runs) ------------------------------


def _scan_run(ctx: Context, undo: Undo) -> str:
    """One line of ``overlord status`` for the project, kept as the step's output."""
    from overlord.scanner import scan_project

    row = scan_project(ctx.project.name, ctx.project, ctx.config.dispatch.stale_branch_days)
    if not row.ok:
        raise StepFailed(f"cannot scan {ctx.project.name}: {row.error}")
    state = "dirty" if row.dirty else "clean"
    parts = [f"{ctx.project.name}: {row.branch or 'detached'} {state}"]
    if row.upstream:
        parts.append(f"ahead {row.ahead} behind {row.behind} of {row.upstream}")
    parts.append(f"{len(row.stale_branches)} stale branch(es)")
    if row.old_unmerged:
        parts.append(f"{len(row.old_unmerged)} old unmerged")
    if row.tags:
        parts.append(f"latest tag {row.tags[0].name}")
    return ", ".join(parts)


# --- noop (benchmarks and tests) ----------------------------------------------


def _noop_run(ctx: Context, undo: Undo) -> str:
    seconds = float(ctx.params.get("seconds", 0))
    if seconds:
        time.sleep(seconds)
    if ctx.params.get("fail"):
        raise StepFailed(f"step {ctx.step.id} failed on purpose")
    return "ok"


def _nothing(ctx: Context, undo: Undo) -> str:
    return "nothing to undo"


def _never(ctx: Context, undo: Undo) -> bool:
    return False


def _empty(ctx: Context) -> Undo:
    return {}


ACTIONS: dict[ActionKind, Action] = {
    ActionKind.RUN_TESTS: Action(tests_prepare, tests_run, _never, _nothing),
    ActionKind.MERGE: Action(
        _merge_prepare, _merge_run, _merge_done, lambda ctx, undo: _rewind(ctx, undo, _merge_done)
    ),
    ActionKind.TAG: Action(_tag_prepare, _tag_run, _tag_done, _tag_undo),
    ActionKind.BUMP_VERSION: Action(_bump_prepare, _bump_run, _branch_step_done, _branch_step_undo),
    ActionKind.UPDATE_DEPENDENCY: Action(
        _update_prepare, _update_run, _branch_step_done, _branch_step_undo
    ),
    ActionKind.CLEAN_STALE_BRANCHES: Action(_clean_prepare, _clean_run, _clean_done, _clean_undo),
    ActionKind.PUSH: Action(_push_prepare, _push_run, _push_done, _nothing),
    ActionKind.NOOP: Action(_empty, _noop_run, _never, _nothing),
    ActionKind.SCAN: Action(_empty, _scan_run, _never, _nothing),
}


def action_for(kind: ActionKind) -> Action:
    """The action of a step kind; minion steps live in ``overlord.minion_step``."""
    if kind is ActionKind.MINION:
        from overlord.minion_step import ACTION

        return ACTION
    return ACTIONS[kind]
