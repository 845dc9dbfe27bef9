"""bump-version: on the project's source branch, set its version in the packaging
metadata (and a ``__version__`` literal, if it has one; nothing when the version comes
from tags) and commit; undo puts the branch back at its recorded commit.

No instruction asks for it: release plans add it (SPEC §4.4).
"""

from __future__ import annotations

from overlord.kinds import ActionKind
from overlord.kinds.base import Context, Kind, Traits
from overlord.kinds.commit_step import Edit, commit_action, relative

NAME = ActionKind("bump-version")


def _message(ctx: Context) -> str:
    return f"Bump version to {ctx.params['version']}"


def _edit(ctx: Context) -> Edit:
    from overlord.core import metadata

    files = metadata.set_version(ctx.project.path, ctx.params["version"])
    if not files:
        return Edit("version comes from tags: nothing to change")
    return Edit(f"set version {ctx.params['version']} in {', '.join(relative(ctx, files))}", files)


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=commit_action(_message, _edit),
    planned_by="release plans add it (`release P VERSION`), on the released project",
)
