"""What a plan tested, and therefore what its push sends (SPEC §3, push row).

Each step that moves a ref records where it left it: merge, bump and pin steps the
commit their branch ended at (``undo["after"]``, else ``before`` when the step changed
nothing), the tag step the tag object it made (``undo["object"]``). ``tested_refs`` reads
those records for one push step; ``moved`` compares them with the repository now. A push
sends those object ids (``<sha>:refs/heads/main``), never the branch tips of push time,
and is refused when a branch moved since.
"""

from __future__ import annotations

from overlord.adapters.git.git import Git
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, DispatchStep, StepState
from overlord.errors import MissingBranch, PushRefused


def tested_refs(plan: DispatchPlan, push: DispatchStep) -> dict[str, str | None]:
    """Ref → the object id the plan left it at (None: no step recorded it)."""
    acted = sorted(
        (
            s
            for s in plan.steps
            if s.project == push.project
            and s.kind is not ActionKind.PUSH
            and s.state is StepState.SUCCEEDED
            and s.undo
        ),
        key=lambda s: s.finished_seq or 0,
    )
    out: dict[str, str | None] = {}
    for branch in push.params.get("branches", []):
        ref = f"refs/heads/{branch}"
        out[ref] = None
        for step in acted:  # the last step on the branch wins
            if step.undo.get("branch") == branch:
                # no ``after``: the step changed nothing (``before`` stands) - unless it
                # was redelivered, when it may have acted without recording it
                unchanged = step.undo.get("before") if step.attempts <= 1 else None
                out[ref] = step.undo.get("after") or unchanged
    for tag in push.params.get("tags", []):
        ref = f"refs/tags/{tag}"
        out[ref] = None
        for step in acted:
            if step.kind is ActionKind.TAG and step.undo.get("tag") == tag:
                out[ref] = step.undo.get("object")
    return out


def resolve(git: Git, want: dict[str, str | None]) -> dict[str, str]:
    """``want`` with each unrecorded ref filled from the repository now."""
    out: dict[str, str] = {}
    for ref, sha in want.items():
        if sha is None:
            sha = git.ref_target(ref)
            if sha is None:
                continue
        out[ref] = sha
    return out


def moved(git: Git, want: dict[str, str]) -> list[str]:
    """Refs that no longer point where the plan left them: ``main (tested 1a2b3c4d5e,
    now 5e4d3c2b1a)``."""
    out = []
    for ref, sha in want.items():
        now = git.ref_target(ref)
        if now != sha:
            name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
            out.append(f"{name} (tested {sha[:10]}, now {(now or 'deleted')[:10]})")
    return out


def refs_to_push(config: Config, plan_id: str, push: DispatchStep) -> dict[str, str]:
    """What the push step ``push`` sends: ref → object id; ``PushRefused`` when a ref
    moved since the plan left it, ``MissingBranch`` when one is gone."""
    from overlord.wiring import plan_store

    assert push.project is not None and config.state_url
    plan = plan_store(config).load(plan_id)
    git = Git(config.projects[push.project].path)
    want = resolve(git, tested_refs(plan, push))
    expected = [f"refs/heads/{b}" for b in push.params.get("branches", [])]
    expected += [f"refs/tags/{t}" for t in push.params.get("tags", [])]
    for ref in expected:
        if ref not in want:
            raise MissingBranch(f"{git.path}: nothing to push at {ref}")
    changed = moved(git, want)
    if changed:
        raise refusal(plan.id, push.project, changed, want)
    return want


def refusal(plan_id: str, project: str, changed: list[str], want: dict[str, str]) -> PushRefused:
    first = next(iter(want))
    return PushRefused(
        f"{project}: {', '.join(changed)} moved since plan {plan_id} tested it; nothing was pushed",
        f"put it back where it was tested (keep new work on another branch), e.g. `git branch "
        f"-f {first.removeprefix('refs/heads/')} {want[first][:10]}`, then `overlord approve "
        f"{plan_id}`; or `overlord cancel {plan_id}` and run the release again",
    )


def check_unmoved(config: Config, plan: DispatchPlan) -> None:
    """Before a push is approved: refuse (``PushRefused``, the plan keeps waiting) when
    a ref any pending push would send moved since the plan tested it."""
    for step in plan.steps:
        if step.kind is ActionKind.PUSH and step.state in (StepState.PENDING, StepState.FAILED):
            refs_to_push(config, plan.id, step)
