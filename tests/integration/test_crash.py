"""Nothing lost (SPEC §4.3): SIGKILL mid-step, then redelivery, `resume` or `cancel`.

(a) distributed: a real `celery -A overlord.tasks worker` subprocess (prefork, -c 2) on
    the real Redis (db 10, flushed). Killing the pool child running a step makes the
    broker redeliver it (acks_late + reject_on_worker_lost); killing the whole worker and
    starting another one, `overlord resume` re-enqueues what is left. Each effect happens
    exactly once.
(b) embedded: `overlord dispatch` in a subprocess, SIGKILLed mid-plan; `overlord resume`
    finishes the plan, `overlord cancel` rolls it all back.

The slow step of (a) is the merge itself: a post-merge hook (runs after the merge commit
is written) signals, then sleeps, so the kill lands after the step acted and before it
recorded success — the case that must not act twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from overlord import dispatching, runner
from overlord.core import approval
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchPlan, PlanState, StepState
from overlord.core.planner import PlanBuilder
from overlord.tasks.private_redis import reap_orphans
from tests.dispatch_helpers import (
    DB_CRASH,
    add_merge_and_tag,
    branch,
    cli,
    commits_with_subject,
    configure,
    merge_commits,
    overlord_argv,
    redis_db_url,
)
from tests.kit import Workspace, build_workspace, git, wait_for, workspace_snapshot

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MERGE_SUBJECT = "Merge branch 'develop' into main"
UPDATE_SUBJECT = "Update acme-core to 0.2.0"


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A short private TMPDIR for subprocesses; every process still naming it at the end
    (the private Redis server left by a killed embedded run) is killed."""
    path = Path(tempfile.mkdtemp(prefix="ovk", dir="/tmp"))
    yield path
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(path) in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except psutil.Error:
            pass
    shutil.rmtree(path, ignore_errors=True)


def slow_hook(repo: Path, marker: Path, seconds: float) -> None:
    hook = repo / ".git" / "hooks" / "post-merge"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch '{marker}'\nsleep {seconds}\n")
    hook.chmod(0o755)


def merge_and_tag(config: Config) -> DispatchPlan:
    b = PlanBuilder(config, "merge develop to main in core, then tag it")
    add_merge_and_tag(b)
    return b.build()


def start_plan(config: Config, plan: DispatchPlan) -> str:
    """Save an approved plan and enqueue it (distributed, detached)."""
    verdict = approval.decide(config, plan, yes=True)
    dispatching.submit(config, plan, verdict)
    runner.run(config, plan.id, detach=True)
    return plan.id


class Worker:
    """`python -m celery -A overlord.tasks worker` (prefork) in its own session."""

    def __init__(self, config_path: Path, log: Path, scratch: Path, name: str) -> None:
        env = {
            **os.environ,
            "OVERLORD_CONFIG": str(config_path),
            "TMPDIR": str(scratch),
            "PYTHONPATH": str(ROOT),
        }
        env.pop("OVERLORD_INPROCESS_WORKER", None)
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "overlord.tasks",
                "worker",
                "-Q",
                "direct",
                "-c",
                "2",
                "--pool",
                "prefork",
                "--loglevel",
                "INFO",
                "-n",
                f"{name}@%h",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=str(scratch),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: "ready." in log.read_text() or self.proc.poll() is not None, 60, "worker")
        assert self.proc.poll() is None, log.read_text()

    def pool(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()

    def busy_child(self) -> psutil.Process | None:
        """The pool process running a step (it has a git child)."""
        for child in self.pool():
            try:
                if child.children(recursive=True):
                    return child
            except psutil.Error:
                pass
        return None

    def kill_all(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown: the main process only
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill_all()


@pytest.fixture
def workers(tmp_path: Path, scratch: Path) -> Iterator[Callable[[Path, str], Worker]]:
    started: list[Worker] = []

    def start(config_path: Path, name: str) -> Worker:
        worker = Worker(config_path, tmp_path / f"{name}.log", scratch, name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def dist_ws(tmp_path: Path, git_env: dict[str, str]) -> Workspace:
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    configure(ws, broker_url=redis_db_url(DB_CRASH))
    return ws


def assert_merged_and_tagged_once(ws: Workspace, before: dict) -> None:  # type: ignore[type-arg]
    core = ws.repos["core"]
    refs = before[str(core)]["refs"]
    merges = merge_commits(core, "main", MERGE_SUBJECT)
    assert len(merges) == 1, merges
    assert git(core, "rev-parse", "main") == merges[0]
    parents = git(core, "rev-list", "--parents", "-n", "1", merges[0]).split()[1:]
    assert parents == [refs["refs/heads/main"], refs["refs/heads/develop"]]
    assert git(core, "tag", "-l", "v0.2.0") == "v0.2.0"
    assert git(core, "rev-parse", "v0.2.0^{commit}") == merges[0]
    assert git(core, "cat-file", "-t", "v0.2.0") == "tag"
    assert branch(core) == "develop"  # the branch it was on
    assert git(core, "status", "--porcelain") == ""


@dataclass
class SlowMerge:
    """A merge-and-tag plan started on a fresh worker, its merge step inside a 3 s hook."""

    config: Config
    before: dict  # type: ignore[type-arg]
    worker: Worker
    plan_id: str


def start_slow_merge(
    ws: Workspace, workers: Callable[[Path, str], Worker], tmp_path: Path, name: str
) -> SlowMerge:
    config = configure(ws)
    marker = tmp_path / "in-hook"
    slow_hook(ws.repos["core"], marker, 3)
    before = workspace_snapshot(ws)
    worker = workers(ws.config_path, name)
    plan_id = start_plan(config, merge_and_tag(config))
    wait_for(marker.exists, 60, "the merge step to reach its hook")
    return SlowMerge(config, before, worker, plan_id)


def test_killed_pool_child_is_redelivered_and_acts_once(
    dist_ws: Workspace, workers: Callable[[Path, str], Worker], tmp_path: Path
) -> None:
    run = start_slow_merge(dist_ws, workers, tmp_path, "crash1")
    config, before, worker, plan_id = run.config, run.before, run.worker, run.plan_id
    child = worker.busy_child()
    assert child is not None
    child.kill()  # SIGKILL the pool process mid-step

    plan = runner.wait(config, plan_id, timeout=90)
    assert plan.state is PlanState.SUCCEEDED, (plan.state, plan.error)
    s1 = plan.step("s1")
    assert s1.attempts == 2  # redelivered to a new pool process
    assert "already done" in s1.output
    assert worker.proc.poll() is None  # the worker itself lived on
    assert_merged_and_tagged_once(dist_ws, before)


def test_killed_worker_then_resume_finishes_once(
    dist_ws: Workspace, workers: Callable[[Path, str], Worker], tmp_path: Path
) -> None:
    run = start_slow_merge(dist_ws, workers, tmp_path, "crash2a")
    config, before, first, plan_id = run.config, run.before, run.worker, run.plan_id
    first.kill_all()  # the whole worker, pool and all
    stalled = runner.store_for(config).load(plan_id)
    assert stalled.state is PlanState.RUNNING
    assert stalled.step("s1").state is StepState.RUNNING

    workers(dist_ws.config_path, "crash2b")
    res = cli(dist_ws.config_path, "resume", plan_id)
    assert res.code == 0, res.text
    plan = runner.store_for(config).load(plan_id)
    assert plan.state is PlanState.SUCCEEDED, plan.error
    assert "already done" in plan.step("s1").output
    assert_merged_and_tagged_once(dist_ws, before)


# --- embedded: the dispatching process itself dies ----------------------------------------


def slow_tests_workspace(tmp_path: Path) -> Workspace:
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    sleep = f"{sys.executable} -c 'import time; time.sleep(2)'"
    configure(ws, projects={"api": {"test_command": sleep}, "web": {"test_command": sleep}})
    return ws


def start_killable_dispatch(ws: Workspace, scratch: Path, text: str) -> tuple[str, Config]:
    """`overlord dispatch --yes TEXT` in a subprocess, SIGKILLed (with its process group)
    once a run-tests step is running; returns the plan id."""
    from overlord.core import config as config_module

    config = config_module.load(ws.config_path)
    proc = subprocess.Popen(
        overlord_argv("--config", str(ws.config_path), "dispatch", "--yes", text),
        cwd=str(scratch),
        env={**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    store = runner.store_for(config)

    def testing() -> bool:
        rows = store.list_plans() if (ws.root / "state" / "overlord.db").exists() else []
        if not rows:
            return False
        plan = store.load(str(rows[0]["id"]))
        return any(
            s.kind is ActionKind.RUN_TESTS and s.state is StepState.RUNNING for s in plan.steps
        )

    try:
        wait_for(testing, 60, "a run-tests step to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    (row,) = store.list_plans()
    plan = store.load(str(row["id"]))
    assert plan.state is PlanState.RUNNING  # nobody finished it
    return plan.id, config


def test_embedded_killed_dispatch_then_resume(tmp_path: Path, scratch: Path) -> None:
    ws = slow_tests_workspace(tmp_path)
    plan_id, config = start_killable_dispatch(ws, scratch, "update core to 0.2.0 in api and web")
    # its private broker outlived it (own session); the next embedded runtime stops it
    (orphan,) = reap_orphans(scratch)
    assert orphan.parent == scratch and not orphan.exists()

    res = cli(ws.config_path, "resume", plan_id)
    assert res.code == 0, res.text
    plan = runner.store_for(config).load(plan_id)
    assert plan.state is PlanState.SUCCEEDED, plan.error
    assert all(s.state is StepState.SUCCEEDED for s in plan.steps)
    for name in ("api", "web"):
        repo = ws.repos[name]
        assert commits_with_subject(repo, "develop", UPDATE_SUBJECT) == 1
        assert "acme-core" in git(repo, "show", "develop:pyproject.toml")
        assert branch(repo) == "develop"
        assert git(repo, "status", "--porcelain") == ""


def test_embedded_killed_dispatch_then_cancel_rolls_back(tmp_path: Path, scratch: Path) -> None:
    ws = slow_tests_workspace(tmp_path)
    before = workspace_snapshot(ws)
    plan_id, config = start_killable_dispatch(ws, scratch, "update core to 0.2.0 in api and web")
    assert workspace_snapshot(ws) != before  # the killed run had acted

    res = cli(ws.config_path, "cancel", plan_id)
    assert "Traceback" not in res.text
    plan = runner.store_for(config).load(plan_id)
    assert plan.state is PlanState.CANCELLED, (plan.state, plan.error, plan.notes)
    assert plan.undone and all(plan.step(s).state is StepState.UNDONE for s in plan.undone)
    assert workspace_snapshot(ws) == before


def test_resume_of_a_plan_a_live_worker_runs_is_refused(
    dist_ws: Workspace, workers: Callable[[Path, str], Worker], tmp_path: Path
) -> None:
    run = start_slow_merge(dist_ws, workers, tmp_path, "busy1")
    config, before, plan_id = run.config, run.before, run.plan_id
    res = cli(dist_ws.config_path, "resume", plan_id)
    assert res.code == 2, res.text
    assert f"plan {plan_id} is still running: busy1@" in res.text and "(s1)" in res.text
    assert "Traceback" not in res.text

    plan = runner.wait(config, plan_id, timeout=90)
    assert plan.state is PlanState.SUCCEEDED, (plan.state, plan.error)
    assert plan.step("s1").attempts == 1  # nothing was sent twice
    assert_merged_and_tagged_once(dist_ws, before)
