"""Commands Overlord starts (a project's test command): their own session, a bounded
output tail, and nothing they started left running (SPEC §4.6).

- The command runs in a new session (process group) under a small guard process. When
  it times out, is cancelled, or when the process that started it (a worker) dies, even
  by SIGKILL, the whole group gets SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds.
  After a normal exit, whatever the command left running in its group is stopped the
  same way. (A process that starts a session of its own leaves the group; nothing short
  of a container follows it.)
- Output (stdout and stderr together) is read as it comes and only the last
  ``OUTPUT_BYTES`` are kept: memory stays flat whatever the command prints.
- The environment (default: this process's, without secrets: ``secrets.scrubbed_env``)
  has no variable that points git at another repository (``refs.without_repository_vars``).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from overlord.refs import without_repository_vars

#: Bytes of a command's output kept (the end of it); the rest is counted and dropped.
OUTPUT_BYTES = 64 * 1024
#: Seconds between SIGTERM and SIGKILL of a command's process group.
KILL_GRACE = 2.0
#: Seconds between two checks of ``cancelled`` while a command runs.
CANCEL_POLL = 1.0

# The guard: started in the new session, it runs the command as its child (same group),
# passes its exit status on, and when its parent (the worker) is gone, stops the group.
_GUARD = """
import os, signal, sys, time
parent = int(sys.argv[1])
grace = float(sys.argv[2])
try:
    child = os.fork()
except OSError as exc:
    sys.stderr.write(f"cannot start: {exc}\\n"); sys.exit(127)
if child == 0:
    try:
        os.execvp(sys.argv[3], sys.argv[3:])
    except OSError as exc:
        sys.stderr.write(f"cannot run {sys.argv[3]!r}: {exc.strerror}\\n")
        os._exit(127)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's TERM is for the command
while True:
    pid, status = os.waitpid(child, os.WNOHANG)
    if pid:
        sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
    if os.getppid() != parent:  # the worker died: nothing it started may survive it
        os.killpg(0, signal.SIGTERM)
        time.sleep(grace)
        os.killpg(0, signal.SIGKILL)
    time.sleep(0.1)
"""


@dataclass
class Outcome:
    """How a command ended: exit ``code`` (None when stopped), the kept ``output``."""

    code: int | None
    output: str
    timed_out: bool = False
    cancelled: bool = False
    dropped: int = 0  # bytes of output not kept

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out and not self.cancelled

    @property
    def reason(self) -> str:
        """Why it did not succeed, in a few words."""
        if self.timed_out or self.cancelled:
            return "timed out" if self.timed_out else "cancelled"
        return f"exit {self.code}" if self.code is not None else "not started"


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cancelled: Callable[[], bool] | None = None,
    keep: int = OUTPUT_BYTES,
) -> Outcome:
    """Run ``argv`` in ``cwd`` as described in the module docstring."""
    from overlord.secrets import scrubbed_env

    environment = without_repository_vars(scrubbed_env() if env is None else env)
    guard = [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), str(KILL_GRACE)]
    try:
        proc = subprocess.Popen(
            [*guard, *argv],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome(None, f"cannot run {argv[0]!r}: {exc.strerror}")
    assert proc.stdout is not None
    tail = bytearray()
    dropped = 0
    timed_out = stopped = False
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + CANCEL_POLL
    fd = proc.stdout.fileno()
    poller = select.poll()  # not select.select: no limit on the descriptor's number
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if cancelled is not None and now >= next_check:
                next_check = now + CANCEL_POLL
                if cancelled():
                    stopped = True
                    break
            ready = poller.poll(min(deadline - now, 0.2) * 1000)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # every writer closed its end
                tail += chunk
                if len(tail) > 2 * keep:
                    dropped += len(tail) - keep
                    del tail[:-keep]
            elif proc.poll() is not None:
                break  # exited; a process it left holds the pipe open
    finally:
        stop_group(proc)
        proc.stdout.close()
    if len(tail) > keep:
        dropped += len(tail) - keep
        del tail[:-keep]
    text = tail.decode(errors="replace")
    if dropped:
        text = f"[{dropped} bytes of output not kept]\n" + text.lstrip("\ufffd")
    if timed_out:
        text += f"\ntimed out after {timeout:g}s"
    elif stopped:
        text += "\ncancelled"
    code = None if timed_out or stopped else proc.returncode
    return Outcome(code, text, timed_out, stopped, dropped)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of ``proc`` (its session), SIGKILL after ``KILL_GRACE``."""
    pgid = proc.pid
    if not _signal_group(pgid, signal.SIGTERM):
        proc.wait()
        return
    deadline = time.monotonic() + KILL_GRACE
    pause = 0.001  # a group that ends at once (the usual case) is seen gone in ~1 ms
    while time.monotonic() < deadline:
        proc.poll()  # reap the guard, or the group never looks empty
        if not _signal_group(pgid, 0):
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    else:
        _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
