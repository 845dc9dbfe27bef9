"""`overlord worker`: queues, concurrency, startup line, one-line errors, a real plan, and
the global `concurrent` limit across several workers on one model queue."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from overlord.cli.app import main
from overlord.cli.services import concurrency_for, resolve_queues, worker_argv
from overlord.core import config as config_module
from overlord.errors import ConfigError
from tests.dispatch_helpers import run_detached
from tests.kit import Workspace, peak_overlap

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "overlord.yml"
#: A Redis database of its own, so other tests' queues and workers never meet these.
DB = 14
SLEEP_TEST = f'{sys.executable} -c "import time; time.sleep(1.5)"'


# --- helpers shared with test_beat / test_flower / test_compose ------------------------


def redis_db(db: int) -> str:
    """A flushed database of the tests' Redis (``OVERLORD_TEST_REDIS``, default
    127.0.0.1:6379: sessions sharing one server take each other's tasks)."""
    from tests.dispatch_helpers import TEST_REDIS

    url = f"redis://{TEST_REDIS}/{db}"
    redis_lib.Redis.from_url(url).flushdb()
    return url


def configure(ws: Workspace, broker: str | None, extra: str = "") -> Path:
    """Add broker_url (and any YAML in ``extra``) to the workspace's config."""
    text = ws.config_path.read_text()
    if broker:
        text += f"\nbroker_url: {broker}\n"
    ws.config_path.write_text(text + extra)
    return ws.config_path


def set_test_command(ws: Workspace, command: str) -> None:
    text = ws.config_path.read_text()
    text = re.sub(r"test_command: .*", f"test_command: {json.dumps(command)}", text)
    ws.config_path.write_text(text)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m overlord ARGS`` in its own session, output to ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "overlord", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise AssertionError(f"process exited {proc.returncode}:\n{text}")
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} within {timeout}s:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Warm shutdown: SIGTERM to the main process only (celery-lab.md)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def start_worker(
    config_path: Path, queues: list[str], log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    args = ["--config", str(config_path), "worker", "--loglevel", "INFO", *extra]
    for q in queues:
        args += ["--queue", q]
    proc = spawn(args, log)
    wait_for_line(proc, log, r"ready\.", 60)
    return proc


# --- pure -------------------------------------------------------------------------------


def test_queues_and_concurrency_of_the_example_config() -> None:
    config = config_module.load(EXAMPLE)
    assert resolve_queues(config, None) == [
        "direct",
        "local-14b",
        "local-30b",
        "cloud-fast",
        "cloud-heavy",
    ]
    assert resolve_queues(config, ["cloud-fast,direct", "direct"]) == ["cloud-fast", "direct"]
    assert concurrency_for(config, ["cloud-fast"]) == 10
    assert concurrency_for(config, ["local-14b"]) == 2
    assert concurrency_for(config, ["direct"]) == config.dispatch.max_concurrent_steps
    with pytest.raises(ConfigError, match="valid queues: direct, local-14b"):
        resolve_queues(config, ["gpu"])
    argv = worker_argv(["cloud-fast"], 10, "threads", "INFO", None)
    assert argv[:5] == ["worker", "--queues", "cloud-fast", "--concurrency", "10"]
    assert "--prefetch-multiplier" in argv and argv[argv.index("--prefetch-multiplier") + 1] == "1"
    assert argv[argv.index("--hostname") + 1] == "cloud-fast@%h"


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_queue_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yml"
    config.write_text(EXAMPLE.read_text())
    assert main(["--config", str(config), "worker", "--queue", "gpu"]) == 2
    line = _one_error(capsys)
    assert "unknown queue 'gpu'" in line
    assert "direct, local-14b, local-30b, cloud-fast, cloud-heavy" in line


def test_unreachable_broker_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        EXAMPLE.read_text().replace("redis://127.0.0.1:6379/0", "redis://127.0.0.1:1/0")
    )
    started = time.monotonic()
    assert main(["--config", str(config), "worker", "--queue", "direct"]) == 2
    assert time.monotonic() - started < 10
    assert "cannot reach the broker at redis://127.0.0.1:1/0" in _one_error(capsys)


def test_no_broker_url_says_workers_need_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OVERLORD_BROKER_URL", raising=False)
    config = tmp_path / "c.yml"
    config.write_text(EXAMPLE.read_text().replace("broker_url:", "# broker_url:"))
    for command in ("worker", "beat", "flower"):
        assert main(["--config", str(config), command]) == 2
        assert "need broker_url" in _one_error(capsys)


def test_help_does_not_import_celery() -> None:
    code = (
        "import sys\nfrom overlord.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('celery' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


# --- real workers on Redis -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.redis
def test_direct_worker_runs_a_dispatched_plan(
    workspace: Workspace, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = redis_db(DB)
    path = configure(workspace, broker)
    log = tmp_path / "worker.log"
    proc = start_worker(path, ["direct"], log)
    try:
        head = log.read_text().splitlines()[0]
        assert head.startswith("overlord worker: queues direct · concurrency 5 · pool threads")
        assert f"broker {broker}" in head
        code = main(["--config", str(path), "dispatch", "run tests across all projects", "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 0, doc
        assert doc["state"] == "succeeded"
        workers = {s["worker"] for s in doc["steps"]}
        assert all(w and w.startswith("direct@") for w in workers), workers
    finally:
        assert stop(proc) == 0
    assert "Warm shutdown" in log.read_text()


@pytest.mark.slow
@pytest.mark.redis
def test_scaled_workers_never_exceed_the_endpoint_limit(
    workspace: Workspace, redis_url: str, tmp_path: Path
) -> None:
    """Two workers with concurrency 2 each on `cloud-fast` (concurrent: 2): at most 2 steps
    of that queue run at once, because each holds a slot of the global semaphore."""

    broker = redis_db(DB)
    models = (
        "\nmodels:\n  cloud-fast: {endpoint: 'http://127.0.0.1:9/v1', model: m, "
        "tier: cloud-fast, concurrent: 2}\n"
    )
    path = configure(workspace, broker, models)
    set_test_command(workspace, SLEEP_TEST)
    procs = [
        start_worker(path, ["cloud-fast"], tmp_path / f"w{i}.log", "--hostname", f"w{i}@%h")
        for i in range(2)
    ]
    procs.append(start_worker(path, ["direct"], tmp_path / "direct.log"))
    try:
        plan = run_detached(
            config_module.load(path),
            "run tests across all projects",
            queue="cloud-fast",
            timeout=120,
        )
    finally:
        for proc in procs:
            stop(proc)
    assert plan.state.value == "succeeded", [(s.id, s.state, s.error) for s in plan.steps]
    assert len({s.worker for s in plan.steps}) == 2  # both workers took steps
    assert peak_overlap((s.started_at, s.ended_at) for s in plan.steps) == 2
