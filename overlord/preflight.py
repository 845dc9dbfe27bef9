"""Repository preflight (SPEC §4.6): before anything changes, refuse a plan whose
repositories are missing, dirty, mid-merge or lack a branch it needs."""

from __future__ import annotations

from overlord.checkout import require_branch, require_clean
from overlord.config import ActionKind, Config
from overlord.errors import PlanError, RepoNotFound
from overlord.git import Git
from overlord.plan import DispatchPlan
from overlord.scope import TRAITS


def preflight(config: Config, plan: DispatchPlan) -> None:
    """Refuse, before anything changes, a plan whose repositories are missing, dirty,
    mid-merge, or lack a branch it needs (SPEC §4.6), or whose code work would have no
    sandbox (embedded mode; a distributed worker refuses the step itself)."""
    for project in plan.projects:
        spec = config.projects[project]
        git = Git(spec.path)
        if not git.is_repo():
            raise RepoNotFound(
                f"{project}: {spec.path} is missing or not a git repository",
                "fix its path in the config",
            )
        steps = [s for s in plan.steps if s.project == project]
        writes = [s for s in steps if not TRAITS[s.kind].read_only]
        if writes or any(s.params.get("branch") for s in steps):
            require_clean(git)
        for step in steps:
            for key in ("branch", "source", "target", "ref"):
                if step.params.get(key):
                    require_branch(git, step.params[key])
            if step.kind is ActionKind.TAG and git.tag_exists(step.params["name"]):
                raise PlanError(
                    f"{project}: tag {step.params['name']} already exists",
                    "pick another version, or delete the tag first",
                )
    if not config.broker_url and any(s.kind is ActionKind.MINION for s in plan.steps):
        from overlord.containers import choose_backend

        choose_backend(config)  # no sandbox and no explicit `process`: refused (exit 2)
