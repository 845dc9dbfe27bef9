"""The ``concurrent`` limit of an endpoint holds across worker processes (SPEC §4.5).

Real Redis, real ``celery -A overlord.tasks worker`` processes, real minion steps (process
backend) against a scripted model server that counts the requests it serves at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml

from overlord import dispatching, runner
from overlord.core import approval
from overlord.core import config as config_module
from overlord.core.config import Config
from overlord.core.parser import parse
from overlord.core.plan import PlanState, StepState
from overlord.core.registry import Registry
from overlord.dispatching import plan_intents
from overlord.routing.semaphore import Semaphore
from tests.conftest import TEST_REDIS
from tests.kit import add_commit, git
from tests.openai_server import ScriptedOpenAI

pytestmark = pytest.mark.slow

DB = 12  # a Redis database of its own: its ``direct`` queue is this test's alone
LEASE = 3.0
ROOT = Path(__file__).resolve().parents[2]


def make_repos(root: Path, count: int) -> dict[str, Any]:
    projects = {}
    for i in range(count):
        repo = root / f"p{i}"
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        add_commit(repo, "README.md", f"project {i}\n", "initial")
        projects[f"p{i}"] = {"path": str(repo), "branch_model": "trunk"}
    return projects


def make_config(tmp_path: Path, server: ScriptedOpenAI, count: int, concurrent: int) -> Config:
    name = f"ep-{uuid.uuid4().hex[:8]}"
    data = {
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "broker_url": f"redis://{TEST_REDIS}/{DB}",
        "projects": make_repos(tmp_path / "repos", count),
        "models": {
            name: {
                "endpoint": server.url,
                "model": "scripted-14b",
                "tier": "local",
                "concurrent": concurrent,
                "health_check_url": server.health_url,
            }
        },
        "minions": {"backend": "process"},
        "dispatch": {
            "max_concurrent_steps": count,
            "step_timeout_default": 120,
            "slot_lease_seconds": LEASE,
        },
    }
    path = tmp_path / "overlord.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_module.load(path)


@pytest.fixture
def clean_db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"redis://{TEST_REDIS}/{DB}")
    client.delete("direct", "unacked", "unacked_index")
    yield client
    client.delete("direct", "unacked", "unacked_index")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[Config, int], list[subprocess.Popen[bytes]]]]:
    started: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(config: Config, count: int) -> list[subprocess.Popen[bytes]]:
        (queue,) = [e.queue_name for e in config.models.values()]
        concurrency = next(iter(config.models.values())).concurrent + 1
        env = {**os.environ, "OVERLORD_CONFIG": str(config.source)}
        for i in range(count):
            log = open(tmp_path / f"worker{i}.log", "wb")
            logs.append(log)
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "overlord.tasks", "worker",
                 "-Q", f"{queue},direct", "-c", str(concurrency), "--pool", "threads",
                 "-n", f"w{i}-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            started.append(proc)
        return started

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for log in logs:
        log.close()


def run_plan(config: Config, text: str) -> str:
    plan = plan_intents(config, [parse(text, Registry(config))])
    verdict = approval.decide(config, plan, yes=True)
    plan = dispatching.submit(config, plan, verdict)
    runner.run(config, plan.id, detach=True)
    return plan.id


def test_concurrent_limit_holds_across_worker_processes(
    tmp_path: Path, clean_db: redis.Redis, workers: Any
) -> None:
    with ScriptedOpenAI(delay=0.4) as server:
        config = make_config(tmp_path, server, count=10, concurrent=2)
        workers(config, 3)  # 3 processes x 3 threads = 9 consumers for 2 slots
        plan_id = run_plan(config, "format all projects")
        plan = runner.wait(config, plan_id, timeout=120)
        assert plan.state is PlanState.SUCCEEDED, [(s.id, s.state, s.error) for s in plan.steps]
        assert server.chat_count == 10
        assert server.max_concurrent == 2  # never more, and the two slots were both used
    assert all(s.state is StepState.SUCCEEDED for s in plan.steps)
    assert {s.endpoint for s in plan.steps} == set(config.models)


def _cmdline(process: psutil.Process) -> str:
    """The command line, or "" for a child that already exited (a zombie, or gone)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _minion_parent(procs: list[subprocess.Popen[bytes]]) -> tuple[int, list[int]] | None:
    """(pid of the worker running a minion, pids of its minion processes)."""
    for proc in procs:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            continue
        minions = [c.pid for c in children if "overlord.minion_runtime.agent" in _cmdline(c)]
        if minions:
            return proc.pid, minions
    return None


def test_slot_of_a_sigkilled_worker_comes_back_after_its_lease(
    tmp_path: Path, clean_db: redis.Redis, workers: Any
) -> None:
    with ScriptedOpenAI([{"sleep": 60}]) as server:
        config = make_config(tmp_path, server, count=1, concurrent=1)
        (endpoint,) = config.models.values()
        semaphore = Semaphore.for_endpoint(clean_db, endpoint, lease_seconds=LEASE)
        procs = workers(config, 2)
        run_plan(config, "format p0")
        deadline = time.monotonic() + 60
        found = None
        while time.monotonic() < deadline and (found is None or semaphore.in_use() == 0):
            found = _minion_parent(procs)
            time.sleep(0.1)
        assert found is not None and semaphore.in_use() == 1, "no worker took the slot"
        worker_pid, minion_pids = found
        os.kill(worker_pid, signal.SIGKILL)
        for pid in minion_pids:  # its minion (own session) would otherwise run on
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed_at = time.monotonic()
        time.sleep(LEASE / 3)
        assert semaphore.in_use() == 1  # nobody released it: the lease still holds it
        while semaphore.in_use() and time.monotonic() - killed_at < LEASE * 3:
            time.sleep(0.05)
        back_after = time.monotonic() - killed_at
        assert semaphore.in_use() == 0, "the slot never came back"
        assert LEASE / 3 <= back_after <= LEASE + 1.5
        # and a new holder can take it
        token = semaphore.acquire(timeout=LEASE * 2)
        assert token is not None
        semaphore.release(token)
