"""push: ``git push --atomic`` of exactly the commits and tags the plan made and tested
(refused when a branch moved since), last, only after every other step succeeded.
Irreversible (no undo), hence always approved by a person; never pre-approvable.

No instruction asks for it: release plans add it with ``--push``.
"""

from __future__ import annotations

from overlord.errors import GitError, StepFailed
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Kind, Traits, Undo, nothing

NAME = ActionKind("push")


def _prepare(ctx: Context) -> Undo:
    """The object ids the plan left each ref at (what its tests ran on); refused when a
    branch moved since (``overlord.adapters.git.tested``)."""
    from overlord.adapters.git import tested

    git = ctx.git
    want = tested.refs_to_push(ctx.config, ctx.plan_id, ctx.step)
    remote = git.remote_named(ctx.project.remote)
    if remote is None:
        raise StepFailed(
            f"{git.path}: no git remote matches {ctx.project.remote!r}",
            f"add one (git -C {git.path} remote add origin URL) or fix `remote` in the config",
        )
    return {"remote": remote, "refs": want}


def _run(ctx: Context, undo: Undo) -> str:
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


def _done(ctx: Context, undo: Undo) -> bool:
    remote = ctx.git.ls_remote(undo["remote"])
    return all(remote.get(ref) == target for ref, target in undo["refs"].items())


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=False, affects_remote=True),
    estimate=1.0,
    action=Action(_prepare, _run, _done, nothing),
    planned_by="release plans add it (`release ... --push`), after every other step",
    pre_approvable=False,
    learns_duration=False,
)
