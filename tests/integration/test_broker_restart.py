"""A broker restart mid-plan (SPEC §4.3): a real redis-server the test starts (append-only,
fsync always) is SIGKILLed while `overlord worker` runs `run tests across all projects`,
and started again 2 s later on the same data. The worker lives on (it reconnects), the
plan finishes without a person, and every suite ran once."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from overlord import runner
from overlord.core.plan import PlanState, StepState
from tests.dispatch_helpers import configure, overlord_argv
from tests.integration.test_lost_worker import PROJECTS, _lines, _spawn, _Worker
from tests.kit import Workspace, build_workspace, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Redis:
    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("needs redis-server")
        self.proc = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            + ["--dir", str(self.data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, 20, "redis-server", poll=0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def test_workers_survive_a_broker_restart_and_the_plan_finishes(
    tmp_path: Path, git_env: dict[str, str]
) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    broker = _Redis(data, _free_port())
    broker.start()
    ws: Workspace = build_workspace(tmp_path / "ws", behind_upstream=False)
    suites = tmp_path / "suites.log"
    commands = {
        name: {
            "test_command": f"sh -c 'echo start {name} >> {suites}; sleep 5; echo end {name} >> {suites}'"
        }
        for name in PROJECTS
    }
    config = configure(
        ws,
        broker_url=f"redis://127.0.0.1:{broker.port}/0",
        projects=commands,
        autonomy={"global": "proactive"},
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    worker = _Worker(ws, tmp_path / "worker.log", scratch)
    out = tmp_path / "dispatch.log"
    dispatch = _spawn(
        overlord_argv("--config", str(ws.config_path), "dispatch", "run tests across all projects"),
        out,
        scratch,
    )
    try:
        wait_for(lambda: len(_lines(suites)) >= len(PROJECTS), 60, "every suite to start", poll=0.1)
        broker.kill()  # mid-step
        time.sleep(2)
        broker.start()  # the same data directory: what was fsynced comes back
        code = dispatch.wait(timeout=120)
        alive = worker.proc.poll() is None
    finally:
        if dispatch.poll() is None:
            dispatch.kill()
        worker.kill_group()
        broker.kill()
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, out.read_text()
    assert alive and "Unrecoverable error" not in log, log[-3000:]
    for name in PROJECTS:
        assert _lines(suites).count(f"start {name}") == 1
        assert _lines(suites).count(f"end {name}") == 1
    (row,) = runner.store_for(config).list_plans()
    plan = runner.store_for(config).load(row["id"])
    assert plan.state is PlanState.SUCCEEDED
    assert {s.state for s in plan.steps} == {StepState.SUCCEEDED}
