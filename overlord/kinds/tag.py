"""tag: an annotated tag ``vVERSION`` on the project's target branch; undo deletes it.

Asked as ``tag P VERSION``. Refused when the tag exists here or on the remote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from overlord.adapters.git.refs import tag_ref
from overlord.core.intent import VERSION, WORD, Intent, IntentKind, versioned
from overlord.errors import MissingBranch, StepFailed
from overlord.kinds import ActionKind
from overlord.kinds.base import Action, Context, Form, Kind, Traits, Undo

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("tag")


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    assert intent.version
    ref = builder.config.projects[project].target_branch
    builder.add(
        NAME,
        project,
        f"tag {ref} of {project} as v{intent.version}",
        name=f"v{intent.version}",
        ref=ref,
        branches=[ref],
    )


def _prepare(ctx: Context) -> Undo:
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


def _run(ctx: Context, undo: Undo) -> str:
    message = ctx.params.get("message") or f"Release {undo['tag']}"
    ctx.git.tag_annotated(undo["tag"], message, undo["commit"])
    # the tag object the push will send (``overlord.adapters.git.tested``)
    undo["object"] = ctx.git.ref_target(f"refs/tags/{undo['tag']}")
    return f"tagged {undo['commit'][:10]} as {undo['tag']}"


def _done(ctx: Context, undo: Undo) -> bool:
    return ctx.git.rev(tag_ref(undo["tag"])) == undo["commit"]


def _undo(ctx: Context, undo: Undo) -> str:
    if _done(ctx, undo):
        ctx.git.delete_tag(undo["tag"])
        return f"deleted tag {undo['tag']}"
    return f"tag {undo['tag']} already gone"


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=Action(_prepare, _run, _done, _undo),
    forms=(Form(rf"tag (?P<project>{WORD}) (?:as )?{VERSION}", versioned(IntentKind(NAME))),),
    help=("tag P VERSION",),
    order=20,
    add_steps=_add_steps,
)
