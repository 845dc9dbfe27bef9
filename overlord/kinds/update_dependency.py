"""update-dependency: on a dependent's source branch, rewrite its pin of DEP to admit the
new version (keeping the operator) and commit, then run its tests; undo puts the branch
back at its recorded commit.

Asked as ``update DEP [to VERSION] in LIST`` (without VERSION: DEP's current version,
when DEP is a project); release plans add it for every direct dependent.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from overlord.core.intent import (
    LIST,
    TO,
    VERSION,
    WORD,
    FormContext,
    Intent,
    IntentKind,
    is_all,
    projects,
    version,
)
from overlord.core.intent import dependency as dependency_named
from overlord.errors import ParseError, PlanError
from overlord.kinds import ActionKind
from overlord.kinds.base import Context, Form, Kind, Traits
from overlord.kinds.commit_step import Edit, commit_action

if TYPE_CHECKING:
    from overlord.core.plan_builder import PlanBuilder
NAME = ActionKind("update-dependency")


def _intent(m: re.Match[str], ctx: FormContext) -> Intent:
    dependency = dependency_named(m["dep"], ctx.registry)
    wanted = version(m["version"]) if m["version"] else None
    names = projects(m["list"], ctx.registry)
    if dependency in names:
        if not is_all(m["list"]):
            raise ParseError(f"{dependency} cannot depend on itself", "name its dependents")
        names.remove(dependency)
    if not names:
        raise ParseError(f"no project left to update {dependency} in", "name its dependents")
    return Intent(
        kind=IntentKind(NAME), text=ctx.text, projects=names, dependency=dependency, version=wanted
    )


def _add_steps(builder: PlanBuilder, intent: Intent, project: str) -> None:
    from overlord.core import metadata

    config = builder.config
    assert intent.dependency
    dist = intent.dependency
    wanted = intent.version
    if intent.dependency in config.projects:
        dep_project = config.projects[intent.dependency]
        dist = dep_project.distribution
        if wanted is None:
            current = metadata.current_version(dep_project.path)
            if current is None:
                raise PlanError(
                    f"cannot tell the version of {intent.dependency}",
                    "say `update DEP to VERSION in P`",
                )
            wanted = str(current)
    if wanted is None:
        raise PlanError(f"no version given for {dist}", "say `update DEP to VERSION in P`")
    branch = config.projects[project].source_branch
    builder.add(
        NAME,
        project,
        f"pin {dist} to admit {wanted} in {project} on {branch}, commit",
        dependency=dist,
        version=wanted,
        branch=branch,
        branches=[branch],
    )
    builder.add(
        ActionKind.RUN_TESTS, project, f"run the tests of {project} on {branch}", branch=branch
    )


def _message(ctx: Context) -> str:
    return f"Update {ctx.params['dependency']} to {ctx.params['version']}"


def _edit(ctx: Context) -> Edit:
    from overlord.core import metadata

    dep, wanted = ctx.params["dependency"], ctx.params["version"]
    change = metadata.rewrite_pin(ctx.project.path, dep, wanted)
    if not change.changed:
        return Edit(f"pin of {dep} left alone: {change.reason}")
    return Edit(f"{', '.join(change.old)} -> {', '.join(change.new)}", [change.file])


KIND = Kind(
    name=NAME,
    traits=Traits(read_only=False, destructive=False, reversible=True, affects_remote=False),
    estimate=1.0,
    action=commit_action(_message, _edit),
    forms=(Form(rf"update (?P<dep>{WORD})(?: to {VERSION})? {TO} {LIST}", _intent),),
    help=("update DEP [to VERSION] in LIST",),
    order=70,
    add_steps=_add_steps,
)
