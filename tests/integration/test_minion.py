"""End-to-end tests of the minion runtime against a scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.openai_server import ScriptedOpenAI

MAIN = Path(__file__).resolve().parents[2]
SECRET = "sk-test-SECRET-4242-do-not-leak"
BRANCH = "overlord/p1/s1"


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    (path / "app.py").write_text("def answer():\n    return 41\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The minion's environment: isolated HOME (no global git identity), the key var set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("MINION_TEST_KEY", SECRET)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return dict(os.environ)


def run_minion(
    tmp_path: Path, env: dict[str, str], job: dict[str, Any], *, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    job_path = tmp_path / "job.json"
    result_path = tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.run(
        [sys.executable, "-m", "overlord.minion_runtime.agent", str(job_path), str(result_path)],
        cwd=MAIN,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result = json.loads(result_path.read_text())
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("OVERLORD_RESULT ")
    assert json.loads(last.removeprefix("OVERLORD_RESULT ")) == result
    return proc, result


def make_job(repo: Path, server: ScriptedOpenAI, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "repo": str(repo),
        "branch": BRANCH,
        "base": "main",
        "task_type": "feature",
        "instruction": "Make answer return 42\n\nMore detail here.",
        "endpoint": server.url,
        "model": "qwen-test",
        "test_command": [sys.executable, "-c", "import app; assert app.answer() == 42"],
        "lint_command": None,
        "max_turns": 10,
        "max_seconds": 60,
        "request_timeout": 10,
        "command_timeout": 30,
    }
    job.update(overrides)
    return job


def assert_untouched(repo: Path) -> None:
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "branch", "--list", BRANCH) == ""


def test_success_commits_on_branch_and_never_leaks_key(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    new_app = "def answer():\n    return 42\n"
    script = [
        {"tool_calls": [{"name": "list_files", "arguments": {}}]},
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "app.py"}}]},
        {"tool_calls": [{"name": "search", "arguments": {"pattern": "return 4[0-9]"}}]},
        {
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "app.py", "content": new_app}}
            ]
        },
        {
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "pkg/new.txt", "content": "x\n"}},
                {"name": "run_tests", "arguments": {}},
                {"name": "git_diff", "arguments": {}},
            ]
        },
        {"content": "Changed answer to 42."},
    ]
    with ScriptedOpenAI(script) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server))

    assert proc.returncode == 0, proc.stderr
    assert result["status"] == "succeeded"
    assert result["reason"] is None
    assert result["branch"] == BRANCH
    assert sorted(result["files_changed"]) == ["app.py", "pkg/new.txt"]
    assert result["turns"] == 6
    assert result["tokens"] == {"prompt": 60, "completion": 30}
    assert result["summary"].startswith("Changed answer to 42.")
    # the branch holds the commit with the expected message and content
    assert git(repo, "rev-parse", BRANCH) == result["commit"]
    assert git(repo, "log", "-1", "--format=%s", BRANCH) == (
        "overlord: feature: Make answer return 42"
    )
    assert git(repo, "show", f"{BRANCH}:app.py") == new_app.strip()
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", f"{BRANCH}~1")
    # the model saw real tool output
    bodies = [r["json"] for r in server.requests]
    tool_msgs = [m for m in bodies[-1]["messages"] if m["role"] == "tool"]
    assert "app.py" in tool_msgs[0]["content"]
    assert "return 41" in tool_msgs[1]["content"]
    assert "app.py:2:" in tool_msgs[2]["content"]
    assert tool_msgs[-2]["content"].startswith("exit code 0")
    assert "pkg/new.txt" in tool_msgs[-1]["content"]
    assert {t["function"]["name"] for t in bodies[0]["tools"]} >= {"write_file", "run_lint"}
    assert bodies[0]["model"] == "qwen-test"
    # the minion never sends a key, even one in its environment (the relay adds it)
    assert all("Authorization" not in r["headers"] for r in server.requests)
    everything = proc.stdout + proc.stderr + (tmp_path / "result.json").read_text()
    assert SECRET not in everything


def test_review_without_changes(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    with ScriptedOpenAI([{"content": "Looks fine."}]) as server:
        job = make_job(repo, server, task_type="review", test_command=None)
        proc, result = run_minion(tmp_path, env, job)
    assert proc.returncode == 0, proc.stderr
    assert result["status"] == "succeeded"
    assert result["commit"] is None and result["files_changed"] == []
    assert result["summary"] == "Looks fine."
    assert "Authorization" not in server.requests[0]["headers"]
    # a review with no change leaves the new branch at base
    assert git(repo, "rev-parse", BRANCH) == git(repo, "rev-parse", "main")


def test_server_error_fails_with_reason(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    script = [
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "a"}}]},
        {"status": 500},
    ]
    with ScriptedOpenAI(script) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server))
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert "HTTP 500" in result["reason"]
    assert result["commit"] is None
    assert_untouched(repo)
    assert not (repo / "a.txt").exists()
    assert SECRET not in proc.stdout + proc.stderr


def test_malformed_response_fails(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    with ScriptedOpenAI([{"raw": "this is not json"}]) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server))
    assert proc.returncode == 1
    assert "malformed response" in result["reason"]
    assert_untouched(repo)


def test_connection_refused_fails(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    with ScriptedOpenAI([]) as server:
        job = make_job(repo, server)
    # the server is stopped now: its port refuses connections
    proc, result = run_minion(tmp_path, env, job)
    assert proc.returncode == 1
    assert "cannot reach model endpoint" in result["reason"]
    assert_untouched(repo)


def test_slow_server_times_out(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    with ScriptedOpenAI([{"sleep": 10, "content": "too late"}]) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server, request_timeout=1))
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert "timed out" in result["reason"]
    assert result["duration"] < 8
    assert_untouched(repo)


def test_malformed_tool_calls_fail(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    bad_json = {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{"}}
    unknown = {"id": "c2", "type": "function", "function": {"name": "rm_rf", "arguments": "{}"}}
    script = [
        {"raw_tool_calls": [bad_json]},
        {"raw_tool_calls": [unknown]},
        {"raw_tool_calls": [{"id": "c3", "type": "function"}]},
        {"content": "never reached"},
    ]
    with ScriptedOpenAI(script) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server))
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert "malformed" in result["reason"]
    assert result["turns"] == 3
    # the model was told what was wrong after each malformed call
    tool_msgs = [m for m in server.requests[-1]["json"]["messages"] if m["role"] == "tool"]
    assert "not valid JSON" in tool_msgs[0]["content"]
    assert "unknown tool" in tool_msgs[1]["content"]
    assert_untouched(repo)


def test_one_malformed_call_is_recoverable(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    bad = {"id": "c1", "type": "function", "function": {"name": "write_file", "arguments": "nope"}}
    script = [
        {"raw_tool_calls": [bad]},
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "b.txt", "content": "b"}}]},
        {"content": "ok"},
    ]
    with ScriptedOpenAI(script) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server))
    assert proc.returncode == 0, result
    assert result["files_changed"] == ["b.txt"]


def test_path_escape_is_rejected(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    outside = tmp_path / "outside.txt"
    script = [
        {
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": "../outside.txt", "content": "x"}}
            ]
        },
        {
            "tool_calls": [
                {"name": "write_file", "arguments": {"path": str(outside), "content": "x"}}
            ]
        },
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "/etc/passwd"}}]},
        {
            "tool_calls": [
                {
                    "name": "write_file",
                    "arguments": {"path": ".git/hooks/pre-commit", "content": "x"},
                }
            ]
        },
        {"tool_calls": [{"name": "list_files", "arguments": {"path": "sub/../../.."}}]},
        {"content": "gave up"},
    ]
    with ScriptedOpenAI(script) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server))
    assert not outside.exists()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    tool_msgs = [m for m in server.requests[-1]["json"]["messages"] if m["role"] == "tool"]
    assert len(tool_msgs) == 5
    assert all(m["content"].startswith("error:") for m in tool_msgs)
    assert "outside the repository" in tool_msgs[0]["content"]
    assert "root:" not in tool_msgs[2]["content"]
    # rejected paths are tool errors, not malformed calls: the run itself succeeds, unchanged
    assert result["status"] == "succeeded"
    assert result["commit"] is None


def test_max_turns_exceeded_fails(repo: Path, tmp_path: Path, env: dict[str, str]) -> None:
    script = [{"tool_calls": [{"name": "git_diff", "arguments": {}}]} for _ in range(10)]
    script[0] = {
        "tool_calls": [{"name": "write_file", "arguments": {"path": "c.txt", "content": "c"}}]
    }
    with ScriptedOpenAI(script) as server:
        proc, result = run_minion(tmp_path, env, make_job(repo, server, max_turns=3))
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert "max_turns" in result["reason"]
    assert result["turns"] == 3
    assert len(server.requests) == 3
    assert_untouched(repo)


def test_dirty_tree_and_missing_base_refused(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    with ScriptedOpenAI([]) as server:
        _, result = run_minion(tmp_path, env, make_job(repo, server, base="nope"))
        assert "base ref 'nope' not found" in result["reason"]
        (repo / "README.md").write_text("dirty\n")
        _, result = run_minion(tmp_path, env, make_job(repo, server))
        assert "dirty" in result["reason"]
        assert server.requests == []
    assert (repo / "README.md").read_text() == "dirty\n"


def test_existing_branch_is_kept_and_stdout_mode(
    repo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    git(repo, "checkout", "-q", "-b", BRANCH)
    script = [
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "d.txt", "content": "d"}}]},
    ]
    with ScriptedOpenAI(script) as server:
        job_path = tmp_path / "job.json"
        job_path.write_text(json.dumps(make_job(repo, server, base="does-not-matter")))
        proc = subprocess.run(
            [sys.executable, "-m", "overlord.minion_runtime.agent", str(job_path)],
            cwd=MAIN,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("OVERLORD_RESULT "))
    assert proc.returncode == 0, proc.stderr
    assert result["summary"] == "done"  # the exhausted script answers "done"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == BRANCH
    assert git(repo, "rev-parse", "HEAD") == result["commit"]


def test_server_health_models_and_concurrency() -> None:
    with ScriptedOpenAI([{"sleep": 0.3}, {"sleep": 0.3}], health_status=503) as server:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(server.health_url, timeout=5)
        assert info.value.code == 503
        server.set_health(200)
        with urllib.request.urlopen(server.base_url + "/health", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(server.url + "/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "scripted-model"

        def call() -> None:
            req = urllib.request.Request(
                server.url + "/chat/completions",
                data=json.dumps({"model": "m", "messages": []}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert json.load(resp)["choices"][0]["message"]["content"] == "done"

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert server.max_concurrent == 2
        deadline = time.monotonic() + 2  # the handler counts down just after it answers
        while server.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.in_flight == 0
        assert server.health_checks == 2


PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-m", "overlord.minion_runtime.agent", sys.argv[1], sys.argv[2]],
    env={**os.environ, "OVERLORD_PARENT_PID": str(os.getpid())},
    start_new_session=True,
)
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_minion_stops_when_its_worker_is_killed(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """A SIGKILLed worker must not leave its minion calling the model on its own."""
    with ScriptedOpenAI([{"sleep": 60}]) as server:
        job_path, result_path = tmp_path / "job.json", tmp_path / "result.json"
        job_path.write_text(json.dumps(make_job(repo, server, request_timeout=90)))
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, str(job_path), str(result_path)],
            cwd=MAIN,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert parent.stdout is not None
        minion = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while server.chat_count == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.chat_count == 1 and _alive(minion)
        os.kill(parent.pid, 9)
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(minion) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(minion), "the minion outlived its worker"
