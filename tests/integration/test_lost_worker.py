"""Lost workers recovered without a person (SPEC §4.3), distributed mode, real processes.

`overlord worker --queue direct` runs `run tests across all projects`; while every suite
runs, the worker's whole process group is SIGKILLed and a fresh worker (same name) is
started. Nobody runs `resume`: the `dispatch` following the plan (and the fresh worker's
watchdog) notices the steps whose heartbeat stopped and re-sends them. The plan succeeds
within 60 s of the kill, every suite runs exactly once after the kill, and the suites
killed with the worker did not go on running (their process groups died with it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from overlord import runner
from overlord.core.plan import PlanState, StepState
from tests.dispatch_helpers import DB_CRASH, configure, overlord_argv, redis_db_url
from tests.kit import Workspace, build_workspace, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = ("core", "api", "web", "tools")


def _spawn(args: list[str], log: Path, scratch: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(scratch)}
    env.pop("OVERLORD_INPROCESS_WORKER", None)
    return subprocess.Popen(
        args,
        cwd=str(scratch),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class _Worker:
    def __init__(self, ws: Workspace, log: Path, scratch: Path) -> None:
        argv = overlord_argv("--config", str(ws.config_path), "worker", "--queue", "direct")
        self.log = log
        self.proc = _spawn(argv, log, scratch)
        wait_for(
            lambda: "ready." in log.read_text() or self.proc.poll() is not None,
            60,
            "worker",
            poll=0.1,
        )
        assert self.proc.poll() is None, log.read_text()

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


@pytest.fixture
def ws(tmp_path: Path, git_env: dict[str, str]) -> Workspace:
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    log = tmp_path / "suites.log"
    commands = {
        name: {
            "test_command": f"sh -c 'echo start {name} >> {log}; sleep 4; echo end {name} >> {log}'"
        }
        for name in PROJECTS
    }
    configure(
        ws,
        broker_url=redis_db_url(DB_CRASH),
        projects=commands,
        autonomy={"global": "proactive"},
    )
    return ws


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_killed_worker_group_is_recovered_without_resume(ws: Workspace, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    suites = tmp_path / "suites.log"
    first = _Worker(ws, tmp_path / "worker1.log", scratch)
    out = tmp_path / "dispatch.log"
    dispatch = _spawn(
        overlord_argv("--config", str(ws.config_path), "dispatch", "run tests across all projects"),
        out,
        scratch,
    )
    second = None
    try:
        wait_for(lambda: len(_lines(suites)) >= len(PROJECTS), 60, "every suite to start", poll=0.1)
        first.kill_group()  # the worker and its pool: SIGKILL mid-step
        killed_at = time.monotonic()
        seen = len(_lines(suites))
        time.sleep(1)
        assert len(_lines(suites)) == seen  # the killed suites died with their worker
        second = _Worker(ws, tmp_path / "worker2.log", scratch)
        code = dispatch.wait(timeout=120)
        elapsed = time.monotonic() - killed_at
    finally:
        if dispatch.poll() is None:
            dispatch.kill()
        for worker in (first, second):
            if worker is not None:
                worker.kill_group()
    text = out.read_text()
    assert code == 0, text
    assert elapsed < 60, elapsed
    assert "re-sent step" in text, text
    after = _lines(suites)[seen:]
    for name in PROJECTS:
        assert after.count(f"start {name}") == 1, after  # once after the kill, not twice
        assert after.count(f"end {name}") == 1, after
    config = configure(ws)
    (row,) = runner.store_for(config).list_plans()
    plan = runner.store_for(config).load(row["id"])
    assert plan.state is PlanState.SUCCEEDED
    assert {s.state for s in plan.steps} == {StepState.SUCCEEDED}
    assert all(s.attempts == 2 for s in plan.steps)
    resent = [e for e in runner.store_for(config).events(plan.id) if e["kind"] == "re-sent"]
    assert sorted(e["step_id"] for e in resent) == sorted(s.id for s in plan.steps)


def test_cancel_stops_a_running_suite(tmp_path: Path, git_env: dict[str, str]) -> None:
    """`overlord cancel` from another shell while a suite runs on a worker: the suite's
    process group is stopped (nothing it started survives), the plan reads cancelled."""
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    marker, started = tmp_path / "late", tmp_path / "started"
    command = f"sh -c 'touch {started}; (sleep 6; touch {marker}) & sleep 120'"
    config = configure(
        ws,
        broker_url=redis_db_url(DB_CRASH),
        projects={"core": {"test_command": command}},
        autonomy={"global": "proactive"},
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    worker = _Worker(ws, tmp_path / "worker.log", scratch)
    argv = overlord_argv("--config", str(ws.config_path), "dispatch", "run tests in core")
    dispatch = _spawn(argv, tmp_path / "dispatch.log", scratch)
    try:
        wait_for(started.exists, 60, "the suite to start", poll=0.1)
        (row,) = runner.store_for(config).list_plans()
        cancel = _spawn(
            overlord_argv("--config", str(ws.config_path), "cancel", row["id"]),
            tmp_path / "cancel.log",
            scratch,
        )
        assert cancel.wait(timeout=60) == 0, (tmp_path / "cancel.log").read_text()
        dispatch.wait(timeout=60)
    finally:
        if dispatch.poll() is None:
            dispatch.kill()
        worker.kill_group()
    plan = runner.store_for(config).load(row["id"])
    assert plan.state is PlanState.CANCELLED, plan.state
    assert "cancelled" in (plan.step("s1").error or "")
    time.sleep(7)
    assert not marker.exists()  # the suite's background child was stopped with it
