"""Lost workers recovered without a person (SPEC §4.3), distributed mode, real processes.

`overlord worker --queue direct` runs `run tests across all projects`; while every suite
runs, the worker's whole process group is SIGKILLed and a fresh worker (same name) is
started. Nobody runs `resume`: the `dispatch` following the plan (and the fresh worker's
watchdog) notices the steps whose heartbeat stopped and re-sends them. The plan succeeds
within 60 s of the kill, every suite runs exactly once after the kill, and the suites
killed with the worker did not go on running (their process groups died with it).

Two noticers racing on one lost step (a real worker takes the message the first one
re-sent) re-send it once: one `re-sent` event, one run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from overlord import defaults, dispatching, runner
from overlord.core import approval
from overlord.core.config import Config
from overlord.core.plan import PlanState, StepState
from overlord.tasks import liveness
from overlord.tasks.app import make_app
from tests.dispatch_helpers import DB_CRASH, configure, overlord_argv, plan_of, redis_db_url
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


def _core_suite(tmp_path: Path, command: str) -> tuple[Workspace, Config]:
    """A workspace whose core suite is ``command``, dispatched on the crash tests' broker."""
    ws = build_workspace(tmp_path / "ws", behind_upstream=False)
    config = configure(
        ws,
        broker_url=redis_db_url(DB_CRASH),
        projects={"core": {"test_command": command}},
        autonomy={"global": "proactive"},
    )
    return ws, config


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
    marker, started = tmp_path / "late", tmp_path / "started"
    command = f"sh -c 'touch {started}; (sleep 6; touch {marker}) & sleep 120'"
    ws, config = _core_suite(tmp_path, command)
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


#: A worker that takes the next message of ``direct`` (unacknowledged) and dies at once,
#: as a SIGKILLed one does: nothing restores the message.
TAKE_AND_DIE = """
import os, sys
from overlord.core import config
from overlord.tasks.app import make_app
with make_app(config.load(sys.argv[1])).connection_for_read() as conn:
    taken = conn.default_channel.basic_get("direct")
    os._exit(0 if taken is not None else 3)
"""


def test_racing_noticers_resend_a_lost_step_once(
    tmp_path: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `recover` calls race on one lost step: the late one read the plan (step running
    on the dead worker) before the early one re-sent it, and goes on after a live worker
    took the redelivered message, which is back in the unacked hash under the same
    delivery tag. Only the early one re-sends: one `re-sent` event, the suite runs once."""
    suites = tmp_path / "suites.log"
    command = f"sh -c 'echo start >> {suites}; sleep 2; echo end >> {suites}'"
    ws, config = _core_suite(tmp_path, command)
    store = runner.store_for(config)
    plan = plan_of(config, "run tests in core")
    plan = dispatching.submit(config, plan, approval.decide(config, plan, yes=True))
    runner.run(config, plan.id, detach=True)  # no worker yet: the message waits in `direct`
    (step,) = plan.steps
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    taker = subprocess.run(
        [sys.executable, "-c", TAKE_AND_DIE, str(ws.config_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=str(scratch),
        capture_output=True,
        timeout=60,
    )
    assert taker.returncode == 0, taker.stderr.decode()
    assert store.claim(plan.id, step.id, "dead@nowhere") is not None  # as the dead one did
    app = make_app(config)

    def unacked() -> dict[str, str]:
        with app.connection_for_read() as conn:
            return liveness._message_tags(conn.default_channel, plan.id)

    lost = unacked()
    assert list(lost) == [step.id]
    worker = _Worker(ws, tmp_path / "worker.log", scratch)

    monkeypatch.setattr(defaults, "LOST_WORKER_SECONDS", 0)  # lost at once, in this process
    early_done, late_waits = threading.Event(), threading.Event()
    still_runs = liveness._still_runs

    def claimed_again() -> bool:
        return store.load_step(plan.id, step.id).worker not in (None, "dead@nowhere")

    def slow_inspect(*args: object) -> bool:
        answer = still_runs(*args)  # the dead worker does not answer: INSPECT_TIMEOUT
        if threading.current_thread().name == "late":
            late_waits.set()
            early_done.wait(30)
            wait_for(claimed_again, 30, "the live worker to take the re-sent step", poll=0.05)
            held.update(unacked())
        return answer

    monkeypatch.setattr(liveness, "_still_runs", slow_inspect)
    lines: dict[str, list[str]] = {}
    held: dict[str, str] = {}

    def late() -> None:
        lines["late"] = liveness.recover(app, config, plan.id)

    thread = threading.Thread(target=late, name="late")
    try:
        thread.start()
        assert late_waits.wait(30)
        lines["early"] = liveness.recover(app, config, plan.id)
        early_done.set()
        thread.join(60)
        final = runner.wait(config, plan.id, timeout=60)
        with app.connection_for_read() as conn:  # a second copy would still be on its way
            channel = conn.default_channel

            def drained() -> bool:
                waiting = channel.queue_declare("direct").message_count
                return waiting == 0 and not channel.client.hlen(channel.unacked_key)

            wait_for(drained, 30, "the broker to hold no message of the plan", poll=0.1)
    finally:
        early_done.set()
        worker.kill_group()
    assert not thread.is_alive()
    assert held == lost  # what the late one found: the running message, under the lost tag
    assert len(lines["early"]) == 1, lines
    assert lines["late"] == [], lines
    resent = [e for e in store.events(plan.id) if e["kind"] == "re-sent"]
    assert [e["step_id"] for e in resent] == [step.id], resent
    assert final.state is PlanState.SUCCEEDED, final.state
    assert _lines(suites) == ["start", "end"]  # run once, by the live worker
    assert store.load_step(plan.id, step.id).attempts == 2
