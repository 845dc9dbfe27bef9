"""Commands Overlord starts: own session, whole group stopped, bounded output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overlord.adapters.commands import proc, proc_guard


def _gone_later(marker: Path, wait: float) -> bool:
    time.sleep(wait)
    return not marker.exists()


def test_timeout_stops_what_the_command_started(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    script = f"(sleep 1.5; touch {marker}) & sleep 30"
    done = proc.run(["sh", "-c", script], cwd=tmp_path, timeout=0.5)
    assert done.timed_out and not done.ok and done.code is None
    assert "timed out after 0.5s" in done.output
    assert _gone_later(marker, 2.5)


def test_a_normal_exit_does_not_wait_for_nor_leave_background_processes(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    script = f"(sleep 1.5; touch {marker}) & echo started"
    done = proc.run(["sh", "-c", script], cwd=tmp_path, timeout=60)
    assert done.ok and done.output.strip() == "started"
    assert _gone_later(marker, 2.5)


def test_exit_code_and_output_together(tmp_path: Path) -> None:
    done = proc.run(["sh", "-c", "echo out; echo err >&2; exit 3"], cwd=tmp_path, timeout=60)
    assert done.code == 3 and done.reason == "exit 3"
    assert done.output.split() == ["out", "err"]
    missing = proc.run(["no-such-command-here"], cwd=tmp_path, timeout=60)
    assert missing.code == 127 and "no-such-command-here" in missing.output


def test_a_command_that_closes_its_output_early_still_ends_on_its_own(tmp_path: Path) -> None:
    """End of output is not the end of the command (programs close stdout at exit, some
    long before): its exit status is its own, not the SIGTERM that stops leftovers."""
    script = "echo bye; exec >&- 2>&-; sleep 0.5; exit 3"
    done = proc.run(["sh", "-c", script], cwd=tmp_path, timeout=60)
    assert done.code == 3 and done.output.strip() == "bye"


def test_output_keeps_a_bounded_tail(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(20000): sys.stdout.write('x' * 999 + '\\n')\nprint('END')"
    done = proc.run([sys.executable, "-c", code], cwd=tmp_path, timeout=120)
    assert done.ok
    assert done.output.rstrip().endswith("END")
    assert len(done.output) <= proc.OUTPUT_BYTES + 100
    assert done.dropped > 19_000_000 and "bytes of output not kept" in done.output


def test_cancel_stops_the_group(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return True

    script = f"(sleep 2.5; touch {marker}) & sleep 30"
    done = proc.run(["sh", "-c", script], cwd=tmp_path, timeout=60, cancelled=cancelled)
    assert done.cancelled and calls and "cancelled" in done.output
    assert _gone_later(marker, 3)


def _worker_running_a_command(tmp_path: Path, before: str = "") -> subprocess.Popen[bytes]:
    """A process (own session) that runs ``before`` then a command that starts a
    background job touching ``tmp_path/late`` in 2 s; returned once the command runs."""
    marker, started = tmp_path / "late", tmp_path / "started"
    inner = f"touch {started}; (sleep 2; touch {marker}) & sleep 30"
    starter = (
        f"from overlord.adapters.commands import proc\n{before}"
        f"proc.run(['sh', '-c', {inner!r}], cwd={str(tmp_path)!r}, timeout=60)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", starter], start_new_session=True)
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    return worker


def test_the_group_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    worker = _worker_running_a_command(tmp_path)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its own group, not the command's
    worker.wait()
    assert _gone_later(marker, 3.5)


def test_no_repository_variables_reach_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "GIT_DIR": "/elsewhere/.git", "GIT_WORK_TREE": "/elsewhere"}
    script = 'echo "${GIT_DIR:-none} ${GIT_WORK_TREE:-none}"'
    done = proc.run(["sh", "-c", script], cwd=tmp_path, timeout=60, env=env)
    assert done.output.strip() == "none none"


def test_a_timed_out_test_step_leaves_nothing_running(synced_workspace, tmp_path: Path) -> None:
    from tests.dispatch_helpers import cli, configure

    marker = tmp_path / "late"
    command = f"sh -c '(sleep 2; touch {marker}) & sleep 60'"
    configure(
        synced_workspace,
        projects={"core": {"test_command": command}},
        dispatch={"step_timeout_default": 1},
    )
    res = cli(synced_workspace.config_path, "dispatch", "run tests in core", "--yes")
    assert res.code == 1, res.text
    assert "timed out" in res.text
    assert _gone_later(marker, 3)


def test_a_process_holding_over_1024_descriptors_still_reads_output(tmp_path: Path) -> None:
    """select() refuses descriptors >= 1024; a long-lived process (a worker, the test
    run itself) can hold that many, and every step then failed at once."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("cannot open 1200 descriptors here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held = []
    try:
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        done = proc.run(["sh", "-c", "echo hello"], cwd=tmp_path, timeout=30)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert done.ok, done.output
    assert "hello" in done.output


def test_one_guard_per_process_starts_every_command(tmp_path: Path) -> None:
    """Not an interpreter per command: the commands' parent is this process's guard."""
    first = proc.run(["sh", "-c", "echo $PPID"], cwd=tmp_path, timeout=30)
    second = proc.run(["sh", "-c", "echo $PPID"], cwd=tmp_path, timeout=30)
    assert first.ok and second.ok
    assert first.output == second.output
    assert int(first.output) == proc_guard.guard(proc.KILL_GRACE).process.pid


def test_a_killed_guard_is_replaced(tmp_path: Path) -> None:
    old = proc_guard.guard(proc.KILL_GRACE).process
    old.kill()
    old.wait()
    done = proc.run(["sh", "-c", "echo fine"], cwd=tmp_path, timeout=30)
    assert done.ok and done.output.strip() == "fine"
    assert proc_guard.guard(proc.KILL_GRACE).process.pid != old.pid


def test_a_forked_child_does_not_keep_its_parents_guard_waiting(tmp_path: Path) -> None:
    """A prefork pool forks after its parent may have run a command: the child drops the
    parent's end, so the parent's death still stops the parent's commands."""
    marker = tmp_path / "late"
    before = (
        f"import os, time\nproc.run(['true'], cwd={str(tmp_path)!r}, timeout=60)\n"
        "if os.fork() == 0:\n    time.sleep(20); os._exit(0)\n"
    )
    worker = _worker_running_a_command(tmp_path, before)
    os.kill(worker.pid, signal.SIGKILL)  # the parent only: its forked child lives on
    worker.wait()
    try:
        assert _gone_later(marker, 3.5)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)


def test_the_guard_stops_a_command_whose_pid_the_worker_never_heard(tmp_path: Path) -> None:
    """The worker dies right after asking for a command: the guard, its parent, stops it."""
    marker = tmp_path / "late"
    guard = proc_guard.Guard(grace=0.5)
    reader, writer = os.pipe()
    doc = {
        "id": 1,
        "argv": ["sh", "-c", f"(sleep 1.5; touch {marker}) & sleep 30"],
        "cwd": str(tmp_path),
        "env": dict(os.environ),
    }
    socket.send_fds(guard.sock, [(json.dumps(doc) + "\n").encode()], [writer])
    os.close(writer)
    guard.sock.shutdown(socket.SHUT_RDWR)  # as the worker's death closes it
    assert guard.process.wait(timeout=10) == 0
    assert os.read(reader, 100) == b""  # every writer (the whole group) is gone
    os.close(reader)
    assert _gone_later(marker, 2.5)
