"""The embedded runtime's private Redis server and in-process worker start and stop cleanly."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import psutil
import pytest
import redis

from overlord.config import Config
from overlord.errors import BrokerUnavailable
from overlord.tasks.runtime import PrivateRedis, Runtime


def test_private_redis_serves_on_its_socket_and_is_gone_after_stop() -> None:
    directory = Path(tempfile.mkdtemp(prefix="ovr", dir="/tmp"))
    server = PrivateRedis(directory)
    url = server.start()
    assert url == f"redis+socket://{directory / 'r.sock'}"
    assert server.process is not None
    pid = server.process.pid
    client = redis.Redis(unix_socket_path=str(server.socket))
    assert client.ping()
    assert client.config_get("save") == {"save": ""}
    assert client.config_get("port") == {"port": "0"}  # no TCP port: only this user's socket
    client.close()
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    server.stop()  # twice is harmless


def test_private_redis_that_cannot_start_says_so(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "missing")  # no directory for its socket and log
    with pytest.raises(BrokerUnavailable, match="embedded Redis server did not start") as err:
        server.start()
    assert err.value.hint and "broker_url" in err.value.hint
    assert server.process is None


def test_embedded_runtime_leaves_no_server_thread_or_directory(tmp_path: Path) -> None:
    config = Config.model_validate({"state_url": f"sqlite:///{tmp_path / 'state.db'}"})
    threads = set(threading.enumerate())
    with Runtime(config) as runtime:
        assert runtime.embedded and runtime.with_worker and runtime.app is not None
        assert runtime._tmp is not None
        directory = runtime._tmp
        servers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(directory) in " ".join(p.info["cmdline"] or [])
        ]
        assert len(servers) == 1
        reply = runtime.app.control.inspect(timeout=2).active_queues() or {}
        assert any(q["name"] == "direct" for queues in reply.values() for q in queues)
    assert not directory.exists()
    assert not servers[0].is_running() or servers[0].status() == psutil.STATUS_ZOMBIE
    assert {t for t in threading.enumerate() if t.is_alive()} <= threads
