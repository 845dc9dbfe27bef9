"""Commands Overlord starts (a project's test command): their own session, a bounded
output tail, and nothing they started left running (SPEC §4.6).

- The command runs in a new session (process group), started by this process's guard
  (``overlord.adapters.commands.proc_guard``: one per worker process, not one per command). When it times
  out, is cancelled, or when the process that started it (a worker) dies, even by
  SIGKILL, the whole group gets SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds.
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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from overlord.adapters.commands.proc_guard import Command, guard
from overlord.adapters.git.refs import without_repository_vars

#: Bytes of a command's output kept (the end of it); the rest is counted and dropped.
OUTPUT_BYTES = 64 * 1024
#: Seconds between SIGTERM and SIGKILL of a command's process group.
KILL_GRACE = 2.0
#: Seconds between two checks of ``cancelled`` while a command runs.
CANCEL_POLL = 1.0


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
    from overlord.core.secrets import scrubbed_env

    environment = without_repository_vars(scrubbed_env() if env is None else env)
    reader, writer = os.pipe()
    try:
        for _ in range(2):  # a second time only when the guard had died
            starter = guard(KILL_GRACE)
            command = starter.start(argv, cwd, environment, writer)
            if not command.lost:
                break
    finally:
        os.close(writer)
    if command.error is not None:
        os.close(reader)
        message = f"cannot run {argv[0]!r}: {command.error}"
        if command.chdir_failed or command.lost:
            return Outcome(None, message)
        return Outcome(127, message + "\n")
    tail = bytearray()
    dropped = 0
    timed_out = stopped = False
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + CANCEL_POLL
    fd = reader
    poller = select.poll()  # not select.select: no limit on the descriptor's number
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    output_open = True
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
            wait = min(deadline - now, 0.2)
            if not output_open:  # output over (e.g. closed at exit): wait for the exit itself
                if command.exited(wait):
                    break
                continue
            if poller.poll(wait * 1000):
                chunk = os.read(fd, 65536)
                if not chunk:
                    output_open = False  # every writer closed its end
                    continue
                tail += chunk
                if len(tail) > 2 * keep:
                    dropped += len(tail) - keep
                    del tail[:-keep]
            elif command.poll() is not None:
                break  # exited; a process it left holds the pipe open
    finally:
        stop_group(command)
        starter.over(command)
        os.close(reader)
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
    if command.lost:
        text += "\nits guard process died: exit status unknown"
    code = None if timed_out or stopped else command.returncode
    return Outcome(code, text, timed_out, stopped, dropped)


def stop_group(proc: Command) -> None:
    """SIGTERM the process group of ``proc`` (its session), SIGKILL after ``KILL_GRACE``."""
    pgid = proc.pid
    if not _signal_group(pgid, signal.SIGTERM):
        proc.wait()
        return
    deadline = time.monotonic() + KILL_GRACE
    pause = 0.001  # a group that ends at once (the usual case) is seen gone in ~1 ms
    while time.monotonic() < deadline:
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
