"""The MINION action (SPEC §3): a minion works on a new branch ``overlord/<plan>/<step>``.

- ``prepare`` records the branch and its base (and the base's commit);
- ``run`` routes again when the planned endpoint is now known to be unhealthy, holds one
  of the endpoint's slots (``routing.limit``: global on the step's broker), runs the
  minion (``wiring.minion_backend``) and, when the endpoint fails at call time (refused,
  HTTP 5xx, timed out), marks it unhealthy and retries once on the fallback route; the
  endpoint actually used and why are recorded on the step;
- ``done``: the branch exists and has a commit beyond its base;
- ``undo`` deletes the branch only while it still holds the tip the step recorded and no
  worktree holding it has anything of a person's; otherwise it keeps it and says why.

The API key's value is read from the environment here and handed to the runner only as
``secrets``; the runner gives it to the model relay, never to the minion.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overlord import defaults, wiring
from overlord.adapters.git.git import Git
from overlord.core.code_work import branch_name
from overlord.core.config import ModelEndpoint
from overlord.errors import EndpointUnavailable, GitError, MissingBranch, StepFailed
from overlord.kinds.base import Action, Context, Undo
from overlord.routing import Choice, route
from overlord.routing.broker import broker_url
from overlord.routing.check import current, health_cache, in_flight_now
from overlord.routing.endpoints import FALLBACK, is_healthy
from overlord.routing.health import HealthCache, mark_unhealthy
from overlord.routing.limit import slot

if TYPE_CHECKING:
    from overlord.adapters.containers.result import MinionResult
    from overlord.ports import MinionBackend
log = logging.getLogger(__name__)

#: A minion failure that says the endpoint itself failed (worth a fallback).
ENDPOINT_FAILURE = re.compile(
    r"model endpoint \S+ returned HTTP 5\d\d"
    r"|model request to \S+ timed out"
    r"|cannot reach model endpoint",
)


def endpoint_failure(reason: str | None) -> bool:
    return bool(reason and ENDPOINT_FAILURE.search(reason))


# --- prepare / done / undo -----------------------------------------------------------


def _prepare(ctx: Context) -> Undo:
    git = ctx.git
    base = str(ctx.params.get("base") or ctx.project.source_branch)
    base_sha = git.rev(f"refs/heads/{base}") or git.rev(base)
    if base_sha is None:
        raise MissingBranch(
            f"{git.path}: no branch {base!r} to start the minion from", "create it or pass another"
        )
    return {"branch": branch_name(ctx.plan_id, ctx.step.id), "base": base, "base_sha": base_sha}


def _done(ctx: Context, undo: Undo) -> bool:
    tip = ctx.git.rev(f"refs/heads/{undo['branch']}")
    return tip is not None and tip != undo.get("base_sha")


def worktrees_on(git: Git, branch: str) -> list[str]:
    """Paths of the worktrees that have ``branch`` checked out."""
    out = git.run("worktree", "list", "--porcelain", check=False)
    paths, current_path = [], None
    for line in out.splitlines():
        if line.startswith("worktree "):
            current_path = line.removeprefix("worktree ")
        elif line == f"branch refs/heads/{branch}" and current_path:
            paths.append(current_path)
    return paths


def _minion_made(git: Git, undo: Undo, tip: str) -> bool:
    """With no recorded tip (the worker died before recording it): the branch still at its
    base, or one minion commit on top of the base, is the step's own work."""
    if tip == undo.get("base_sha"):
        return True
    parent = git.rev(f"{tip}^")
    return (
        parent is not None
        and parent == undo.get("base_sha")
        and (git.last_commit(tip)["subject"].startswith("overlord: "))
    )


def _undo(ctx: Context, undo: Undo) -> str:
    """Delete the step's branch only while it is exactly where the minion left it and no
    worktree holding it has anything of a person's; otherwise keep it and say why (the
    rollback records the reason). Never ``--force``: git itself refuses a dirty worktree,
    and the ref is deleted only if it still holds the recorded tip."""
    git = ctx.git
    branch = undo["branch"]
    ref = f"refs/heads/{branch}"
    git.run("worktree", "prune", check=False)
    tip = git.rev(ref)
    if tip is None:
        return f"branch {branch} already gone"
    keep = f"keeping branch {branch}"
    by_hand = f"delete it by hand if it is not wanted: git -C {git.path} branch -D {branch}"
    if tip != undo.get("after") and not (
        undo.get("after") is None and _minion_made(git, undo, tip)
    ):
        raise GitError(
            f"{git.path}: {branch} moved since the minion left it (now at {tip[:10]}); {keep}",
            by_hand,
        )
    common = git.run("rev-parse", "--path-format=absolute", "--git-common-dir")
    ours = (Path(common) / defaults.OWN_WORKTREES).resolve()
    for path in worktrees_on(git, branch):
        if Path(path).resolve().parent != ours:
            raise GitError(
                f"{git.path}: {branch} is checked out in {path}; {keep}",
                "switch that checkout to another branch, then run `overlord cancel` again",
            )
        if Git(path).run("status", "--porcelain", check=False):
            raise GitError(
                f"{git.path}: worktree {path} on {branch} has uncommitted changes; {keep}",
                f"look at them, then remove it: git -C {git.path} worktree remove {path}",
            )
        git.run("worktree", "remove", path)  # a left-over minion worktree, clean
    git.run("update-ref", "-d", ref, tip)  # only if it still holds tip
    return f"deleted branch {branch} (was {tip[:10]})"


# --- routing at run time ---------------------------------------------------------------


def _reroute(
    ctx: Context, health: Mapping[str, Any], url: str | None, on_saturated: str | None = None
) -> Choice:
    params = ctx.params
    return route(
        ctx.config,
        params.get("task_type", "feature"),
        params.get("complexity", "medium"),
        health=health,
        in_flight=in_flight_now(ctx.config, url),
        force_tier=params.get("forced_tier") or None,
        on_saturated=on_saturated,
    )


def _planned(ctx: Context, health: Mapping[str, Any], url: str | None) -> Choice:
    """The planned endpoint while it is not known to be unhealthy; else a new route."""
    config, step = ctx.config, ctx.step
    name = step.endpoint
    if name and name in config.models and is_healthy(health, name):
        e = config.models[name]
        reason = step.route_reason or "preferred"
        return Choice(e.name, e.queue_name, e.tier, e.model, reason, e.tier, url=e.endpoint)
    choice = _reroute(ctx, health, url)
    if not name:
        return choice
    record = health.get(name)
    why = getattr(record, "status", "") or "not configured any more"
    return replace(choice, reason=f"re-routed at run time: {name} is down ({why}); {choice.reason}")


def _saturation_fallback(
    ctx: Context, choice: Choice, health: Mapping[str, Any], url: str | None
) -> Choice:
    """``on_saturated: fallback``: a full endpoint gives way to the next tier with a free slot."""
    config = ctx.config
    if url is None or config.dispatch.on_saturated != FALLBACK or ctx.params.get("forced_tier"):
        return choice
    endpoint = config.models[choice.endpoint]
    used = in_flight_now(config, url).get(choice.endpoint, 0)
    if used < endpoint.concurrent:
        return choice
    other = _reroute(ctx, health, url, on_saturated=FALLBACK)
    if other.endpoint == choice.endpoint:
        return choice
    return replace(other, reason=f"{choice.endpoint} saturated at run time; {other.reason}")


# --- run -----------------------------------------------------------------------------------


def job_for(ctx: Context, undo: Undo, endpoint: ModelEndpoint) -> dict[str, Any]:
    """The minion job: no secret in it, only the name of the key's variable."""
    project, params = ctx.project, ctx.params
    return {
        "repo": str(project.path),
        "branch": undo["branch"],
        "base": undo["base"],
        "instruction": params.get("instruction") or ctx.step.description,
        "task_type": params.get("task_type", "feature"),
        "endpoint": endpoint.endpoint,  # for the relay: the minion never sees it
        "endpoint_name": endpoint.name,
        "model": endpoint.model,
        "api_key_env": endpoint.api_key_env,
        "test_command": shlex.split(project.test_command) if project.test_command else None,
        "lint_command": shlex.split(project.lint_command) if project.lint_command else None,
        "tier": endpoint.tier.value,
        "plan": ctx.plan_id,
        "step": ctx.step.id,
    }


def secrets_for(endpoint: ModelEndpoint) -> dict[str, str]:
    name = endpoint.api_key_env
    value = os.environ.get(name) if name else None
    return {name: value} if name and value else {}


def _record(ctx: Context, choice: Choice) -> None:
    from overlord.wiring import plan_store

    assert ctx.config.state_url
    plan_store(ctx.config).set_route(
        ctx.plan_id, ctx.step.id, choice.endpoint, choice.reason, tier=choice.tier.value
    )


def _call(
    ctx: Context,
    undo: Undo,
    choice: Choice,
    url: str | None,
    deadline: float,
    backend: MinionBackend,
) -> MinionResult:
    config = ctx.config
    endpoint = config.models[choice.endpoint]
    with slot(config, endpoint, url, deadline - time.monotonic()):
        left = deadline - time.monotonic()
        if left <= 0:
            raise StepFailed(
                f"step timed out after {ctx.step.timeout}s waiting for {endpoint.name}"
            )
        return backend.run(
            job_for(ctx, undo, endpoint), timeout=left, secrets=secrets_for(endpoint)
        )


def _summary(result: Any, choice: Choice) -> str:
    lines = [result.summary.strip() or "(no summary)"]
    files = ", ".join(result.files_changed) or "none"
    commit = (result.commit or "")[:10] or "no commit (nothing changed)"
    lines.append(f"branch {result.branch}: {commit}; files: {files}")
    lines.append(f"endpoint {choice.endpoint} ({choice.reason}); turns {result.turns}")
    lines.append(f"model calls through the relay: {len(result.relay_calls)}")
    if result.backend == "process":
        lines.append("UNSANDBOXED: minions.backend is 'process'; the minion ran on the host")
    return "\n".join(lines)


def _run(ctx: Context, undo: Undo) -> str:
    config = ctx.config
    deadline = time.monotonic() + ctx.step.timeout
    backend = wiring.minion_backend(config)  # no sandbox, no explicit `process`: refused here
    cache: HealthCache = health_cache(config)
    health: dict[str, Any] = dict(current(config, cache))
    url = broker_url(config)
    choice = _saturation_fallback(ctx, _planned(ctx, health, url), health, url)
    attempts = 0
    while True:
        attempts += 1
        _record(ctx, choice)
        result = _call(ctx, undo, choice, url, deadline, backend)
        if result.ok:
            undo["after"] = ctx.git.rev(f"refs/heads/{undo['branch']}")  # recorded at finish
            return _summary(result, choice)
        reason = result.reason or "the minion failed without a reason"
        failure = f"minion on {choice.endpoint} failed: {reason}"
        if not endpoint_failure(reason) or attempts > 1:
            raise StepFailed(failure, output=result.logs_tail)
        health[choice.endpoint] = mark_unhealthy(cache, choice.endpoint, _short(reason))
        if deadline - time.monotonic() < defaults.MINION_MIN_RETRY:
            raise StepFailed(
                f"{failure}; no time left to retry on a fallback", output=result.logs_tail
            )
        try:
            fallback = _reroute(ctx, health, url)
        except EndpointUnavailable as exc:
            raise StepFailed(
                f"{failure}; no fallback: {exc.message}", output=result.logs_tail
            ) from None
        failed_at = f"{choice.endpoint} failed at call time ({_short(reason)})"
        choice = replace(fallback, reason=f"fallback: {failed_at}; {fallback.reason}")


def _short(reason: str) -> str:
    return reason if len(reason) <= 160 else reason[:157] + "..."


ACTION = Action(_prepare, _run, _done, _undo)
