"""The guard: one small process per worker process that starts every command
``overlord.adapters.commands.proc`` runs, so that nothing a command started outlives the worker.

The worker talks to it over a socket pair. For each command the guard starts it (a new
session; stdin /dev/null; stdout and stderr the pipe the worker passes along), answers
with its pid, reaps it and reports its exit status. When the worker goes (exit, crash,
SIGKILL), its end of the socket closes: the guard sends SIGTERM to the process group of
every command it started and was not told is over, SIGKILL after the grace period, and
exits. The guard is every command's parent, so no command ever runs unknown to it (a
worker killed between starting a command and hearing its pid leaves nothing behind).

One interpreter per worker process, started on first use, instead of one per command: a
command costs a fork of the guard and a few short messages. A forked child (a prefork
pool process) drops its parent's guard and starts its own when it needs one.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The guard's side (python -I -S -c). Messages are JSON lines; a "start" carries the
# write end of the command's output pipe (SCM_RIGHTS) with its first byte.
_SCRIPT = r"""
import json, os, signal, socket, subprocess, sys, threading, time
grace = float(sys.argv[1])
sock = socket.socket(fileno=0)
sending = threading.Lock()
live = {}  # id -> pgid, until the worker says the group is over

def send(doc):
    try:
        with sending:
            sock.sendall((json.dumps(doc) + "\n").encode())
    except OSError:
        pass  # the worker is gone; the main loop sees it

def reap(key, child):
    code = child.wait()
    send({"id": key, "exit": code if code >= 0 else 128 - code})

def start(doc, fd):
    key = doc["id"]
    try:
        child = subprocess.Popen(doc["argv"], cwd=doc["cwd"], env=doc["env"],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True)
    except (OSError, ValueError, TypeError) as exc:
        name = getattr(exc, "filename", None)
        chdir = name == doc["cwd"] and name != doc["argv"][0]
        send({"id": key, "error": getattr(exc, "strerror", None) or str(exc), "chdir": chdir})
        return
    finally:
        os.close(fd)
    live[key] = child.pid
    send({"id": key, "pid": child.pid})
    threading.Thread(target=reap, args=(key, child), daemon=True).start()

def signal_all(sig):
    alive = False
    for pgid in list(live.values()):
        try:
            os.killpg(pgid, sig)
            alive = True
        except ProcessLookupError:
            pass
        except PermissionError:
            alive = True
    return alive

buffer, fds = b"", []
try:
    while True:
        data, got, _, _ = socket.recv_fds(sock, 65536, 16)
        fds.extend(got)
        if not data:
            break
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            doc = json.loads(line)
            if "argv" in doc:
                start(doc, fds.pop(0))
            else:
                live.pop(doc["over"], None)
finally:  # the worker is gone (or this guard broke): nothing it started may survive it
    if signal_all(signal.SIGTERM):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and signal_all(0):
            time.sleep(0.05)
        signal_all(signal.SIGKILL)
"""


class Command:
    """A command the guard started: its ``pid`` (= its process group), exit status."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.pid = 0
        self.error: str | None = None  # why it did not start
        self.chdir_failed = False
        self.returncode: int | None = None
        self.lost = False
        self._started = threading.Event()
        self._exited = threading.Event()

    def poll(self) -> int | None:
        return self.returncode if self._exited.is_set() else None

    def wait(self) -> int | None:
        self._exited.wait()
        return self.returncode

    def exited(self, timeout: float) -> bool:
        """Whether it exited (waiting at most ``timeout`` seconds)."""
        return self._exited.wait(timeout)

    def _lose(self) -> None:
        self.lost = True
        if not self._started.is_set():
            self.error = "its guard process died"
            self._started.set()
        self._exited.set()


class Guard:
    """The worker's end: start commands under the guard, tell it when one is over."""

    def __init__(self, grace: float) -> None:
        ours, theirs = socket.socketpair()
        self.owner = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _SCRIPT, str(grace)],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the worker's group does not reach it
        )
        theirs.close()
        self.sock = ours
        self.alive = True
        self._sending = threading.Lock()
        self._ids = itertools.count(1)
        self._commands: dict[int, Command] = {}
        threading.Thread(target=self._read, name="overlord-guard", daemon=True).start()

    def start(
        self, argv: Sequence[str], cwd: Path | str, env: Mapping[str, str], output: int
    ) -> Command:
        """Start ``argv`` with ``output`` (a pipe's write end) as stdout and stderr;
        returns once it runs (``pid`` set) or failed to start (``error`` set)."""
        command = Command(next(self._ids))
        self._commands[command.key] = command
        doc = {"id": command.key, "argv": [os.fspath(a) for a in argv], "cwd": os.fspath(cwd)}
        data = (json.dumps({**doc, "env": dict(env)}) + "\n").encode()
        try:
            with self._sending:
                sent = socket.send_fds(self.sock, [data], [output])
                self.sock.sendall(data[sent:])
        except OSError:
            self._lost()
        command._started.wait()
        return command

    def over(self, command: Command) -> None:
        """The command's group is stopped: the guard forgets it."""
        self._commands.pop(command.key, None)
        if not command.lost:
            try:
                with self._sending:
                    self.sock.sendall(f'{{"over": {command.key}}}\n'.encode())
            except OSError:
                self._lost()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._answer(json.loads(line))
        except (OSError, ValueError):
            pass
        self._lost()

    def _answer(self, doc: dict[str, Any]) -> None:
        command = self._commands.get(doc["id"])
        if command is None:
            return
        if "exit" in doc:
            command.returncode = doc["exit"]
            command._exited.set()
        elif "pid" in doc:
            command.pid = doc["pid"]
            command._started.set()
        else:
            command.error, command.chdir_failed = doc["error"], doc["chdir"]
            command._started.set()
            command._exited.set()

    def _lost(self) -> None:
        """The guard died: every command waiting on it is told so."""
        self.alive = False
        for command in list(self._commands.values()):
            command._lose()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


_guard: Guard | None = None
_starting = threading.Lock()
_inherited: list[Guard] = []  # a parent's guards, in a forked child: kept, never used


def guard(grace: float) -> Guard:
    """This process's guard, started when first needed (and again if it died)."""
    global _guard
    with _starting:
        if _guard is None or not _guard.alive or _guard.owner != os.getpid():
            _guard = Guard(grace)
        return _guard


def _forget_after_fork() -> None:
    """A forked child must not hold its parent's end open (the guard would never see the
    parent go) and starts a guard of its own when it needs one."""
    global _guard, _starting
    if _guard is not None:
        _guard.alive = False
        _guard.sock.close()
        _inherited.append(_guard)  # its process is the parent's child, not ours to reap
    _guard = None
    _starting = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
