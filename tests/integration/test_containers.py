"""Minion backends end to end: real git repos, a real scripted OpenAI server, real processes
and (marked docker) real containers on the engine started by .ci/docker.sh."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from overlord.adapters.containers.docker import (
    MinionResult,
    choose_backend,
    container_user,
    describe_container_spec,
    run_minion,
)
from overlord.core.config import Config
from overlord.errors import SandboxUnavailable
from tests.docker_env import docker_client, docker_url  # noqa: F401  (fixture)
from tests.kit import git, one_commit_repo
from tests.openai_server import ScriptedOpenAI

SECRET = "sk-test-SECRET-7731-never-print-me"
KEY_ENV = "OVERLORD_TEST_KEY"
NEW_APP = "def answer():\n    return 42\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return one_commit_repo(tmp_path / "repo")


def make_config(**minions: Any) -> Config:
    return Config.model_validate({"minions": minions})


def make_job(repo: Path, server: ScriptedOpenAI, step: str, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "repo": str(repo),
        "branch": f"overlord/p1/{step}",
        "base": "main",
        "task_type": "feature",
        "instruction": "Make answer return 42",
        "endpoint": server.url,
        "model": "scripted-model",
        "api_key_env": KEY_ENV,
        "test_command": None,
        "max_turns": 6,
        "request_timeout": 30,
        "command_timeout": 60,
    }
    job.update(overrides)
    return job


def fix_script(final: str = "Changed answer to 42.") -> list[Any]:
    write = {"name": "write_file", "arguments": {"path": "app.py", "content": NEW_APP}}
    return [{"tool_calls": [write]}, {"tool_calls": [{"name": "run_tests"}]}, {"content": final}]


def assert_repo_clean(repo: Path) -> None:
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert not (repo / ".git" / "overlord-worktrees").exists()


def assert_landed(repo: Path, result: MinionResult, branch: str) -> None:
    assert result.ok, result
    assert result.commit == git(repo, "rev-parse", f"refs/heads/{branch}")
    assert result.files_changed == ["app.py"]
    assert git(repo, "show", f"{branch}:app.py") + "\n" == NEW_APP
    assert git(repo, "rev-parse", f"{branch}~1") == git(repo, "rev-parse", "main")
    assert_repo_clean(repo)


# --- process backend ------------------------------------------------------------------------


def test_process_backend_commits_on_branch_and_removes_worktree(repo: Path) -> None:
    config = make_config(backend="process", max_turns=7)
    test_cmd = [sys.executable, "-c", "import app; assert app.answer() == 42"]
    with ScriptedOpenAI(fix_script(f"Done; my key is {SECRET}")) as server:
        job = make_job(repo, server, "s1", test_command=test_cmd)
        del job["max_turns"]
        result = run_minion(
            job, backend="process", config=config, timeout=60, secrets={KEY_ENV: SECRET}
        )
        auth = {r["headers"].get("Authorization") for r in server.requests}
        tool_output = server.requests[-1]["json"]["messages"][-1]["content"]
    assert_landed(repo, result, "overlord/p1/s1")
    assert result.backend == "process" and result.turns == 3 and result.duration > 0
    assert auth == {f"Bearer {SECRET}"}  # the key reached the endpoint through the env
    assert tool_output.startswith("exit code 0")  # the project's tests ran in the worktree
    assert SECRET not in result.model_dump_json() and "***" in result.summary
    assert "tools" in server.requests[0]["json"]


def test_process_backend_failure_leaves_no_branch(repo: Path) -> None:
    with ScriptedOpenAI([{"status": 500}]) as server:
        result = run_minion(
            make_job(repo, server, "s2"), backend="process", config=make_config(),
            timeout=60, secrets={KEY_ENV: SECRET},
        )  # fmt: skip
    assert not result.ok and "HTTP 500" in (result.reason or "")
    assert git(repo, "branch", "--list", "overlord/p1/s2") == ""
    assert_repo_clean(repo)


@pytest.mark.slow
def test_process_backend_timeout_kills_the_process_group(repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    sleeper = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    with ScriptedOpenAI([{"tool_calls": [{"name": "run_tests"}]}]) as server:
        job = make_job(repo, server, "s3", test_command=[sys.executable, "-c", sleeper])
        job["max_seconds"] = 300
        started = time.monotonic()
        result = run_minion(
            job, backend="process", config=make_config(), timeout=3, secrets={KEY_ENV: SECRET}
        )
        elapsed = time.monotonic() - started
    assert not result.ok and result.reason == "timed out after 3s"
    assert 3 <= elapsed < 10
    pid = int(pid_file.read_text())
    assert not _alive(pid), "the test command (a grandchild) survived the timeout"
    assert git(repo, "branch", "--list", "overlord/p1/s3") == ""  # the killed run's branch
    assert_repo_clean(repo)


def test_missing_key_fails_before_running(repo: Path) -> None:
    with ScriptedOpenAI() as server:
        result = run_minion(
            make_job(repo, server, "s4"), backend="process", config=make_config(),
            timeout=30, secrets={},
        )  # fmt: skip
        assert server.chat_count == 0
    assert not result.ok and KEY_ENV in (result.reason or "")


def test_choose_backend_never_falls_back_to_the_host() -> None:
    assert choose_backend(make_config(backend="process")) == "process"
    assert choose_backend(make_config(backend="docker")) == "docker"
    started = time.monotonic()
    with pytest.raises(SandboxUnavailable) as info:
        choose_backend(make_config(docker_url="unix:///nonexistent/docker.sock"))
    assert time.monotonic() - started < 2
    assert info.value.exit_code == 2
    assert "Docker" in info.value.message and "unix:///nonexistent" in info.value.message
    assert "backend: process" in str(info.value.hint) and "Docker" in str(info.value.hint)


def test_container_spec_is_sealed(repo: Path, tmp_path: Path) -> None:
    config = make_config(mem_limit="512m", cpus=1.5, image_cloud="img-cloud:1", pids_limit=64)
    job = {"repo": str(repo), "branch": "overlord/p9/s7", "tier": "cloud-fast"}
    work, relay_dir = tmp_path / "w", tmp_path / "r"
    spec = describe_container_spec(
        job, config=config, work=work, relay_dir=relay_dir, user=(1000, 1000)
    )
    assert spec["image"] == "img-cloud:1" and spec["user"] == "1000:1000"
    assert spec["mem_limit"] == "512m" and spec["nano_cpus"] == 1_500_000_000
    assert spec["pids_limit"] == 64 and spec["memswap_limit"] == "512m"
    assert spec["labels"]["overlord.plan"] == "p9" and spec["labels"]["overlord.step"] == "s7"
    assert spec["cap_drop"] == ["ALL"] and spec["privileged"] is False
    assert spec["security_opt"] == ["no-new-privileges"]
    assert spec["network_mode"] == "none" and spec["read_only"] is True
    assert set(spec["tmpfs"]) == {"/tmp"}
    assert spec["volumes"] == {
        str(work): {"bind": "/work", "mode": "rw"},
        str(relay_dir): {"bind": "/relay", "mode": "ro"},
    }
    assert spec["environment"] == {"HOME": "/tmp", "TMPDIR": "/tmp"}
    uid, _ = container_user(repo)
    assert uid != 0


# --- docker backend -------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_docker_backend_end_to_end(repo: Path, docker_client: Any) -> None:  # noqa: F811
    seen: dict[str, Any] = {}

    def inspect_running(body: dict[str, Any]) -> dict[str, Any]:
        """Runs in the server while the minion waits for this answer: inspect its container."""
        found = docker_client.containers.list(filters={"label": "overlord.step=d1"})
        assert len(found) == 1
        container = found[0]
        container.reload()
        seen["attrs"] = container.attrs
        seen["uid"] = container.exec_run(["id", "-u"]).output.decode().strip()
        seen["logs"] = container.logs(stdout=True, stderr=True).decode()
        return {"content": f"All done (key {SECRET})"}

    script = fix_script()[:2] + [inspect_running]
    config = make_config(docker_url=docker_url(), mem_limit="256m", cpus=0.5)
    test_cmd = ["python3", "-c", "import app; assert app.answer() == 42"]
    with ScriptedOpenAI(script) as server:
        job = make_job(repo, server, "d1", test_command=test_cmd, tier="local")
        result = run_minion(
            job, backend="docker", config=config, timeout=120, secrets={KEY_ENV: SECRET}
        )
        auth = {r["headers"].get("Authorization") for r in server.requests}
    assert_landed(repo, result, "overlord/p1/d1")
    assert result.backend == "docker" and result.turns == 3
    assert auth == {f"Bearer {SECRET}"}
    assert "exit code 0" in server.requests[-1]["json"]["messages"][-1]["content"]
    attrs = seen["attrs"]
    host, cfg = attrs["HostConfig"], attrs["Config"]
    assert seen["uid"] != "0" and cfg["User"] != "" and not cfg["User"].startswith("0")
    assert host["Memory"] == 256 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["CapDrop"] == ["ALL"] and host["Privileged"] is False
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    assert host["PidsLimit"] == 256
    assert SECRET not in json.dumps(attrs)  # not in Env, Cmd, Labels, mounts: nowhere
    assert sorted(m["Destination"] for m in attrs["Mounts"]) == ["/relay", "/work"]
    assert cfg["Labels"]["overlord.plan"] == "p1"
    assert SECRET not in seen["logs"] and SECRET not in result.model_dump_json()
    assert "[minion]" in result.logs_tail
    assert len(result.relay_calls) == 3 and all(" -> 200 " in c for c in result.relay_calls)
    assert docker_client.containers.list(all=True, filters={"label": "overlord.step=d1"}) == []


@pytest.mark.docker
@pytest.mark.slow
def test_docker_backend_timeout_kills_and_removes(repo: Path, docker_client: Any) -> None:  # noqa: F811
    config = make_config(docker_url=docker_url())
    with ScriptedOpenAI([{"sleep": 60}]) as server:
        job = make_job(repo, server, "d2", max_seconds=300, request_timeout=300)
        started = time.monotonic()
        result = run_minion(
            job, backend="docker", config=config, timeout=3, secrets={KEY_ENV: SECRET}
        )
        elapsed = time.monotonic() - started
        assert server.chat_count == 1  # the minion really was waiting on the model
    assert not result.ok and result.reason == "timed out after 3s"
    assert elapsed < 20
    assert docker_client.containers.list(all=True, filters={"label": "overlord.step=d2"}) == []
    assert git(repo, "branch", "--list", "overlord/p1/d2") == ""
    assert_repo_clean(repo)


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie awaiting its reaper counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())
