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


#: ``host:port`` of the Redis the tests use: 127.0.0.1:6379 unless ``OVERLORD_TEST_REDIS``
#: names another (a server of one's own, when several test sessions share a machine and
#: would take each other's tasks from one database).
TEST_REDIS = os.environ.get("OVERLORD_TEST_REDIS", "127.0.0.1:6379")
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
