"""`overlord flower`: Flower on the configured broker shows a plan's tasks by what they do,
on which project, for which plan and step (and never a secret), found through Flower's
HTTP API; the worker's log lines name them the same way."""

from __future__ import annotations

import ast
import json
import socket
import time
from pathlib import Path

import pytest
import requests

from overlord.cli.app import main
from tests.integration.test_worker_cli import (
    configure,
    redis_db,
    spawn,
    start_worker,
    stop,
    wait_for_line,
)
from tests.kit import Workspace, add_failing_test

DB = 12
SECRET = "sk-test-flower-must-never-show-this"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.redis
@pytest.mark.slow
def test_flower_api_lists_the_plan_tasks_without_secrets(
    workspace: Workspace,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    broker = redis_db(DB)
    models = (
        "\nmodels:\n  cloud-fast: {endpoint: 'http://127.0.0.1:9/v1', model: m, "
        "tier: cloud-fast, concurrent: 2, api_key_env: ANTHROPIC_API_KEY}\n"
    )
    path = configure(workspace, broker, models)
    port = free_port()
    worker = start_worker(path, ["direct"], tmp_path / "worker.log")
    flower_log = tmp_path / "flower.log"
    flower = spawn(
        ["--config", str(path), "flower", "--port", str(port), "--unauthenticated-api"],
        flower_log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_line(flower, flower_log, r"Visit me at|Registered tasks", 60)
        assert f"overlord flower: {base}" in flower_log.read_text()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # Flower sees the worker (and its events)
            workers = requests.get(f"{base}/api/workers", timeout=5).json()
            if workers:
                break
            time.sleep(0.3)
        assert any("direct" in json.dumps(info) for info in workers.values())
        code = main(["--config", str(path), "dispatch", "run tests in core and tools", "--json"])
        plan = json.loads(capsys.readouterr().out)
        assert code == 0 and plan["state"] == "succeeded", plan
        pid = plan["id"]
        # the display name (Celery's shadow) says what runs on which project
        expected = {
            f"run-tests {s['project']} · {pid}/{s['id']}": (pid, s["id"]) for s in plan["steps"]
        }
        expected[f"finish · {pid}"] = (pid,)
        assert {s["project"] for s in plan["steps"]} == {"core", "tools"}
        found: dict[str, tuple[str, ...]] = {}
        body = ""
        while time.monotonic() < deadline + 30 and found != expected:
            response = requests.get(f"{base}/api/tasks", timeout=5)
            assert response.status_code == 200
            body = response.text
            for task in response.json().values():
                if pid in str(task["args"]):
                    found[task.get("name")] = tuple(ast.literal_eval(task["args"]))
            time.sleep(0.3)
        assert found == expected, body[:2000]
        assert SECRET not in body
        # the worker's log lines carry the same names
        log = (tmp_path / "worker.log").read_text()
        for name in expected:
            assert f"Task {name}[" in log, log[-3000:]

        # a release that fails in api: Flower says what the rollback undoes, and where
        add_failing_test(workspace.repos["api"])
        code = main(["--config", str(path), "dispatch", "--yes", "release core 0.2.0", "--json"])
        failed = json.loads(capsys.readouterr().out)
        assert code == 1 and failed["state"] == "rolled-back", failed
        fid, steps = failed["id"], {s["id"]: s for s in failed["steps"]}
        undos = {
            f"undo {steps[s]['kind']} {steps[s]['project']} · {fid}/{s}" for s in failed["undone"]
        }
        assert f"undo merge core · {fid}/" in " ".join(undos)
        rollback = {f"plan-failed · {fid}", f"rollback · {fid}", f"rollback-done · {fid}"}
        names: set[str] = set()
        while time.monotonic() < deadline + 60 and not (undos | rollback) <= names:
            tasks = requests.get(f"{base}/api/tasks", timeout=5).json().values()
            names = {t.get("name") for t in tasks if fid in str(t["args"])}
            time.sleep(0.3)
        assert (undos | rollback) <= names, names
    finally:
        stop(flower, timeout=15)
        stop(worker)
