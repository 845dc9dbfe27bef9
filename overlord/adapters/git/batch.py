"""Many read-only git commands in many repositories at once, from a few threads.

``overlord status`` asks every repository the same two or three questions. Each of a few
threads (``defaults.SCAN_LANES``) runs a loop that keeps at most ``width`` git processes
running, reads whatever output is ready (``poll``), starts the next command as one ends
and stops (with its process group) a command past its deadline. More than one thread,
because starting a process blocks the thread that starts it until the child has exec'd
(1000 calls of 500 repositories on a loaded 2-core machine: 1.45 s from one loop with 8
running, 0.99 s from 8 loops with 1 each); not one per repository, whose threads would
mostly hand the GIL around. A ``Call`` ends with what ``Git.run`` would have given: its
output, or the very error ``Git`` raises for it (``Git.checked``).
"""

from __future__ import annotations

import locale
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence

from overlord import defaults
from overlord.adapters.git.git import Git, kill_group
from overlord.errors import OverlordError


class Call:
    """``git ARGS`` in one repository: its argument list, environment and outcome.

    ``like``: an earlier call in the same repository whose environment this one shares
    (the environment is the costly part to build, ~0.1 ms).
    """

    def __init__(self, git: Git, *args: str, like: Call | None = None) -> None:
        self.git = git
        self.args = tuple(args)
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.result: subprocess.CompletedProcess[str] | None = None
        self.error: OverlordError | None = None
        if like is not None and like.git is git:
            self.argv, self.env, self.error = git.argv(self.args), like.env, like.error
            return
        try:
            self.argv, self.env = git.command(self.args)
        except OverlordError as exc:  # no such directory: nothing to start
            self.error = exc

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def output(self) -> str:
        """stdout without its trailing newline, or the error ``Git.run`` raises."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError(f"{self.argv} has not run")
        return self.git.checked(self.result).stdout.rstrip("\n")


def _decode(data: bytes) -> str:
    # as ``subprocess`` decodes text=True, errors="replace" output
    encoding = "utf-8" if sys.flags.utf8_mode else locale.getencoding()
    return data.decode(encoding, "replace").replace("\r\n", "\n").replace("\r", "\n")


class _Running:
    def __init__(self, call: Call, proc: subprocess.Popen[bytes], deadline: float) -> None:
        self.call, self.proc, self.deadline = call, proc, deadline
        assert proc.stdout is not None and proc.stderr is not None
        self.stdout_fd, self.stderr_fd = proc.stdout.fileno(), proc.stderr.fileno()
        self.out: dict[int, list[bytes]] = {self.stdout_fd: [], self.stderr_fd: []}

    def finish(self, timed_out: bool) -> None:
        self.proc.wait()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        stdout = _decode(b"".join(self.out[self.stdout_fd]))
        stderr = _decode(b"".join(self.out[self.stderr_fd]))
        call = self.call
        if timed_out:
            call.error = call.git.timed_out(call.argv, call.git.timeout, stderr)
        else:
            call.result = subprocess.CompletedProcess(
                call.argv, self.proc.returncode, stdout, stderr
            )


def run_all(
    calls: Sequence[Call],
    width: int | None = None,
    *,
    lanes: int | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run every call not yet done: ``lanes`` threads (this one among them) each keep at
    most ``width`` running; return when all have ended (or, once ``stop`` is set, when
    the running ones are stopped: the rest stay not done)."""
    todo = [c for c in calls if not c.done]
    width = max(1, width or defaults.SCAN_WIDTH)
    count = max(1, min(lanes or defaults.SCAN_LANES, len(todo)))
    parts = [todo[i::count] for i in range(count)]
    failed: list[BaseException] = []

    def lane(part: list[Call]) -> None:
        try:
            _loop(part, width, stop)
        except BaseException as exc:  # raised in the caller's thread below
            failed.append(exc)

    threads = [threading.Thread(target=lane, args=(part,), daemon=True) for part in parts[1:]]
    for thread in threads:
        thread.start()
    lane(parts[0])
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]


def _loop(calls: list[Call], width: int, stop: threading.Event | None) -> None:
    pending = deque(calls)
    running: dict[int, _Running] = {}  # by each of its open descriptors
    poller = select.poll()
    try:
        while pending or running:
            while pending and len(running) < 2 * width:  # two descriptors each
                if stop is not None and stop.is_set():
                    pending.clear()
                    break
                _start(pending.popleft(), running, poller)
            if not running:
                continue
            wait = min(r.deadline for r in running.values()) - time.monotonic()
            # a stop is noticed within 50 ms
            wait = min(wait, 0.05) if stop is not None else wait
            for fd, _ in poller.poll(max(0, int(wait * 1000) + 1)):
                _read(fd, running, poller)
            _expire(running, poller, time.monotonic(), stop)
    finally:
        for item in {id(r): r for r in running.values()}.values():
            kill_group(item.proc)
            item.proc.wait()


def _start(call: Call, running: dict[int, _Running], poller: select.poll) -> None:
    try:
        proc = subprocess.Popen(
            call.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=call.env,
            start_new_session=True,  # so a timeout can stop git's children too
        )
    except FileNotFoundError:
        call.error = call.git.not_installed()
        return
    item = _Running(call, proc, time.monotonic() + call.git.timeout)
    for fd in (item.stdout_fd, item.stderr_fd):
        running[fd] = item
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)


def _read(fd: int, running: dict[int, _Running], poller: select.poll) -> None:
    item = running[fd]
    data = os.read(fd, 65536)
    if data:
        item.out[fd].append(data)
        return
    poller.unregister(fd)
    del running[fd]
    if item.stdout_fd not in running and item.stderr_fd not in running:
        item.finish(timed_out=False)


def _expire(
    running: dict[int, _Running], poller: select.poll, now: float, stop: threading.Event | None
) -> None:
    stopping = stop is not None and stop.is_set()
    for item in {id(r): r for r in running.values() if stopping or r.deadline <= now}.values():
        kill_group(item.proc)
        for fd in (item.stdout_fd, item.stderr_fd):
            if running.pop(fd, None) is not None:
                poller.unregister(fd)
        if stopping:
            item.proc.wait()
            assert item.proc.stdout is not None and item.proc.stderr is not None
            item.proc.stdout.close()
            item.proc.stderr.close()
        else:
            item.finish(timed_out=True)
