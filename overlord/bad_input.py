"""Bad input (SPEC §4.7): refused before anything changes, in one line that says what to do.

``preflight`` is the one check of a plan's repositories every entry makes before a plan
is saved to run (``overlord dispatch``, ``release --execute``, ``approve``, scheduled
runs); ``check_repo`` is its check of one repository, which release planning makes too.
A missing repository, a dirty or mid-merge tree, a missing branch or an existing tag is
refused here (exit 2) and nothing changes. (Unknown projects are refused by
``registry``, bad versions by ``metadata``, an unreachable broker by
``tasks.runtime.check_broker``, an endpoint that is down by ``routing``.)
"""

from __future__ import annotations

from collections.abc import Iterable

from overlord.adapters.git.git import Git
from overlord.core.config import ActionKind, Config, ProjectConfig
from overlord.core.plan import DispatchPlan
from overlord.errors import DirtyTree, MissingBranch, PlanError, RepoNotFound
from overlord.kinds import registry as kind_registry

#: What a missing branch's error says to do when the caller has nothing better.
CREATE_BRANCH = "create it or pass another branch"

#: Step parameters that name a branch the step needs.
BRANCH_PARAMS = ("branch", "source", "target", "ref")


def check_repo(
    project: str,
    spec: ProjectConfig,
    branches: Iterable[str] = (),
    hint: str = CREATE_BRANCH,
    *,
    clean: bool = True,
) -> Git:
    """The project's repository, refused when missing, (``clean``) dirty or mid-operation,
    or short of one of ``branches``."""
    git = Git(spec.path)
    if not git.is_repo():
        raise RepoNotFound(
            f"{project}: {spec.path} is missing or not a git repository",
            "fix its path in the config",
        )
    if clean:
        operation = git.operation_in_progress()
        if operation:
            raise DirtyTree(
                f"{project}: a {operation} is in progress in {spec.path}",
                f"finish or abort the {operation} first; nothing was changed",
            )
        if git.is_dirty():
            raise DirtyTree(
                f"{project}: {spec.path} has uncommitted changes",
                "commit or stash them first; nothing was changed",
            )
    for branch in dict.fromkeys(branches):
        if git.branch_sha(branch) is None:  # a checked name, exactly refs/heads/<branch>
            raise MissingBranch(f"{project}: no branch {branch!r} in {spec.path}", hint)
    return git


def preflight(config: Config, plan: DispatchPlan) -> None:
    """Refuse, before anything changes, a plan whose repositories are missing, dirty,
    mid-merge, or lack a branch it needs, or whose tag exists, or whose code work would
    have no sandbox (embedded mode; a distributed worker refuses the step itself)."""
    for project in plan.projects:
        steps = [s for s in plan.steps if s.project == project]
        writes = [s for s in steps if not kind_registry.traits(s.kind).read_only]
        git = check_repo(
            project,
            config.projects[project],
            [s.params[k] for s in steps for k in BRANCH_PARAMS if s.params.get(k)],
            clean=bool(writes) or any(s.params.get("branch") for s in steps),
        )
        for step in steps:
            if step.kind is ActionKind.TAG and git.tag_exists(step.params["name"]):
                raise PlanError(
                    f"{project}: tag {step.params['name']} already exists",
                    "pick another version, or delete the tag first",
                )
    if not config.broker_url and any(s.kind is ActionKind.MINION for s in plan.steps):
        from overlord.adapters.containers.docker import choose_backend

        choose_backend(config)  # no sandbox and no explicit `process`: refused (exit 2)
