"""The embedded runtime's private Redis server and in-process worker start and stop cleanly."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from celery._state import task_join_will_block

from overlord import defaults
from overlord.core.config import Config
from overlord.errors import BrokerUnavailable
from overlord.tasks.private_redis import OWNER, PrivateRedis, reap_orphans
from overlord.tasks.runtime import Runtime


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
    assert (directory / OWNER).read_text().split() == [str(os.getpid()), str(pid)]
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not directory.exists()
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
    joins_blocked = task_join_will_block()
    switch = sys.getswitchinterval()
    with Runtime(config) as runtime:
        assert runtime.embedded and runtime.with_worker and runtime.app is not None
        # no task events nobody could read; the GIL passed between its threads sooner
        assert not runtime.app.conf.worker_send_task_events
        assert not runtime.app.conf.task_send_sent_event
        assert sys.getswitchinterval() <= defaults.SWITCH_INTERVAL
        assert runtime.server is not None
        directory = runtime.server.directory
        servers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if str(directory) in " ".join(p.info["cmdline"] or [])
        ]
        assert len(servers) == 1
        assert runtime.ready()  # the worker starts in the background
        reply = runtime.app.control.inspect(timeout=2).active_queues() or {}
        assert any(q["name"] == "direct" for queues in reply.values() for q in queues)
    assert not directory.exists()
    assert not servers[0].is_running() or servers[0].status() == psutil.STATUS_ZOMBIE
    assert {t for t in threading.enumerate() if t.is_alive()} <= threads
    # the worker's pool flags result.get() as blocking while it runs; put back after
    assert task_join_will_block() == joins_blocked
    assert sys.getswitchinterval() == switch


def _open_descriptors() -> int:
    gc.collect()  # what only waits for the collector is not a leak
    return len(os.listdir("/proc/self/fd"))


def test_embedded_runtimes_in_one_process_leave_no_descriptors_behind(tmp_path: Path) -> None:
    # kombu keeps a connection pool per broker address for the life of the process, and
    # every private server has an address of its own: a long-lived process (the test
    # suite, the webhook server) ran out of descriptors when each run left its pool.
    config = Config.model_validate({"state_url": f"sqlite:///{tmp_path / 'state.db'}"})

    def one_run() -> None:
        with Runtime(config) as runtime:
            assert runtime.ready() and runtime.app is not None
            runtime.app.control.inspect(timeout=1).active_queues()
            runtime.app.send_task("overlord.nothing", queue="nowhere")

    one_run()
    before = _open_descriptors()
    for _ in range(4):
        one_run()
    assert _open_descriptors() <= before


def test_a_server_left_by_a_killed_overlord_is_reaped_by_the_next_runtime(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    root.mkdir()
    script = (
        "import sys, time\n"
        "from overlord.tasks.private_redis import PrivateRedis\n"
        "server = PrivateRedis.create()\n"
        "print(server.start(), server.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "TMPDIR": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    url, pid = owner.stdout.readline().split()
    directory = Path(url.removeprefix("redis+socket://")).parent
    assert directory.parent == root
    stranger = root / "overlord-not-ours"  # no owner file: never touched
    stranger.mkdir()
    assert reap_orphans(root) == []  # its overlord still runs
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    server = psutil.Process(int(pid))
    assert not _gone(server)  # the server outlived it
    assert reap_orphans(root) == [directory]
    deadline = time.monotonic() + 5
    while not _gone(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(server)
    assert not directory.exists() and stranger.exists()


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_task_finishing_at_close_stores_its_result_before_the_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    # ``overlord.finish`` settles the plan in its body, which ends the command's wait;
    # Celery then stores its result (and, for other tasks, counts a chord's part, sends a
    # chain's next message, calls error callbacks) on the broker. Closing the runtime
    # stopped the private server without waiting for that: "Exception raised outside
    # body: ConnectionError ... r.sock". Here the store waits until the server stops
    # (at most a moment): it must find the server still up.
    from overlord import runner
    from overlord.tasks.results import Results
    from tests.dispatch_helpers import noop_plan, run_plan

    stopped = threading.Event()
    stored = threading.Event()
    errors: list[BaseException] = []
    stop, store = PrivateRedis.stop, Results.store_result

    def stop_then_say_so(self: PrivateRedis) -> None:
        stop(self)
        stopped.set()

    def late_store(self: Results, task_id: str, result: Any, state: str, *a: Any, **kw: Any) -> Any:
        request = kw.get("request") or (a[1] if len(a) > 1 else None)
        if getattr(request, "task", None) != "overlord.finish":
            return store(self, task_id, result, state, *a, **kw)
        stopped.wait(0.5)  # the old close stopped the server within milliseconds
        try:
            return store(self, task_id, result, state, *a, **kw)
        except BaseException as exc:
            errors.append(exc)
            raise
        finally:
            stored.set()

    monkeypatch.setattr(PrivateRedis, "stop", stop_then_say_so)
    monkeypatch.setattr(Results, "store_result", late_store)
    config = Config.model_validate({"state_url": f"sqlite:///{tmp_path / 'state.db'}"})
    done = run_plan(config, noop_plan("one step", [[0]]), yes=True)
    assert done.state.value == "succeeded", (done.state, done.error)
    assert stored.wait(10)  # the old close left it running: let it end either way
    assert stopped.is_set()
    assert errors == []
    outside = [w for w in recwarn if "raised outside body" in str(w.message)]
    assert outside == []
    assert runner.store_for(config).load(done.id).state.value == "succeeded"
