"""The minion sandbox tried as a hostile model would (issue 12), on the real Docker engine
that .ci/docker.sh starts and on the host backend: the model has the minion run "tests"
that hunt for the key, plant links and FIFOs for the worker, and dial the host's Redis."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from overlord.adapters.containers.docker import run_minion
from overlord.adapters.sql.store import Store
from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.config import ActionKind, Config
from overlord.core.plan import DispatchStep
from overlord.errors import SandboxUnavailable
from overlord.kinds.base import Context
from overlord.minion_step import ACTION
from tests.docker_env import docker_client, docker_url  # noqa: F401  (fixture)
from tests.integration.test_containers import KEY_ENV, assert_repo_clean, make_config, make_job
from tests.integration.test_minion_steps import (
    TASK,
    WRITE_AND_FINISH,
    dispatch,
    endpoint,
    only_plan,
)
from tests.kit import Workspace, git, workspace_snapshot
from tests.openai_server import ScriptedOpenAI

# The hunter gets the key reversed (so the job file does not hold the key itself), turns it
# round and looks for it in every environment and every file it can read.
HUNT = r"""
import os, sys
needle = sys.argv[1][::-1].encode()
roots = sys.argv[2:]
found, files = [], 0
for key, value in os.environ.items():
    if needle in (key + "=" + value).encode():
        found.append("env:" + key)
for pid in os.listdir("/proc"):
    for name in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{pid}/{name}", "rb").read()
        except OSError:
            continue
        files += 1
        if needle in data:
            found.append(f"/proc/{pid}/{name}")
for root in roots:
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath in ("/proc", "/sys", "/dev"):
            dirnames[:] = []
            continue
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as handle:
                    data = handle.read(4 << 20)
            except OSError:
                continue
            files += 1
            if needle in data:
                found.append(path)
print(f"SCANNED {files} FOUND {found}")
"""


def hostile(test_command: list[str], final: str = "All done.") -> list[Any]:
    """A model that writes a file, has the minion run the 'tests', then finishes."""
    write = {"name": "write_file", "arguments": {"path": "app.py", "content": "x = 1\n"}}
    return [{"tool_calls": [write]}, {"tool_calls": [{"name": "run_tests"}]}, {"content": final}]


def tool_output(server: ScriptedOpenAI) -> str:
    """What the 'tests' printed, as the model saw it."""
    return str(server.requests[-1]["json"]["messages"][-1]["content"])


def run(repo: Path, server: ScriptedOpenAI, step: str, backend: str, key: str,
        command: list[str], **config: Any) -> Any:  # fmt: skip
    job = make_job(repo, server, step, test_command=command, command_timeout=120)
    cfg = make_config(docker_url=docker_url(), **config)
    return run_minion(job, backend=backend, config=cfg, timeout=180, secrets={KEY_ENV: key})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("x = 0\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


# --- the key ---------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_a_container_minion_hunting_everywhere_finds_no_key(
    repo: Path,
    docker_client: Any,  # noqa: F811
) -> None:
    key = "sk-" + secrets.token_hex(16)
    command = ["python3", "-c", HUNT, key[::-1], "/"]
    with ScriptedOpenAI(hostile(command)) as server:
        result = run(repo, server, "k1", "docker", key, command)
        seen = tool_output(server)
        auth = {r["headers"].get("Authorization") for r in server.requests}
    assert result.ok, result
    assert "FOUND []" in seen, seen
    assert int(seen.split("SCANNED ")[1].split()[0]) > 1000  # it really read the image
    assert auth == {f"Bearer {key}"}  # yet the model got it, from the relay


def test_a_host_minion_finds_no_key_in_any_process_environment(repo: Path) -> None:
    """Process backend: no key in the minion's environment or any process's (the test
    reads every /proc/*/environ, the issue's /proc/<minion pid>/environ included)."""
    key = "sk-" + secrets.token_hex(16)
    command = [sys.executable, "-c", HUNT, key[::-1], "."]
    with ScriptedOpenAI(hostile(command)) as server:
        result = run(repo, server, "k2", "process", key, command)
        seen = tool_output(server)
        auth = {r["headers"].get("Authorization") for r in server.requests}
    assert result.ok, result
    assert "FOUND []" in seen, seen
    assert auth == {f"Bearer {key}"}
    assert result.backend == "process"


# --- the network -----------------------------------------------------------------------------

DIAL = r"""
import socket, sys
for port in sys.argv[1:]:
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=3).close()
        print(f"REACHED {port}")
    except OSError as exc:
        print(f"BLOCKED {port}: {exc}")
"""


@pytest.mark.docker
@pytest.mark.slow
def test_a_container_minion_cannot_reach_the_host_s_services(
    repo: Path,
    docker_client: Any,  # noqa: F811
) -> None:
    with ScriptedOpenAI() as server:
        command = ["python3", "-c", DIAL, "6379", "5432", str(server.port)]
        server.add(*hostile(command))
        result = run(repo, server, "n1", "docker", "sk-net", command)
        seen = tool_output(server)
    assert result.ok, result
    assert "REACHED" not in seen, seen
    assert seen.count("BLOCKED") == 3


# --- what the container leaves behind ---------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_a_container_minion_cannot_plant_hooks_or_push(
    repo: Path,
    tmp_path: Path,
    docker_client: Any,  # noqa: F811
) -> None:
    """The reproductions: a test planted .git/hooks/post-checkout in the person's repository
    (it ran at their next checkout) and pushed a branch to the remote."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    evil = (
        "import os, subprocess; "
        "open('.git/hooks/post-checkout', 'w').write('#!/bin/sh\\ntouch /tmp/pwned\\n'); "
        "os.chmod('.git/hooks/post-checkout', 0o755); "
        f"print(subprocess.run(['git', 'push', {str(remote)!r}, 'HEAD:refs/heads/evil'], "
        "capture_output=True, text=True).stderr)"
    )
    command = ["python3", "-c", evil]
    with ScriptedOpenAI(hostile(command)) as server:
        result = run(repo, server, "h1", "docker", "sk-hooks", command)
        seen = tool_output(server)
    assert result.ok, result  # the branch came back; nothing else did
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()
    assert git(remote, "branch", "--list", "evil") == ""
    assert "exit code 0" in seen  # the test ran; its push went nowhere
    git(repo, "checkout", "-q", "overlord/p1/h1")  # a checkout runs no planted hook
    assert git(repo, "show", "HEAD:app.py") == "x = 1"


@pytest.mark.docker
@pytest.mark.slow
def test_links_planted_in_the_clone_are_never_followed(
    repo: Path,
    tmp_path: Path,
    docker_client: Any,  # noqa: F811
) -> None:
    """The old fetch-back rewrote .git/config and removed alternates through links the
    container could plant: a host file was overwritten."""
    victim, other = tmp_path / "victim.txt", tmp_path / "other.txt"
    victim.write_text("precious\n")
    other.write_text("also precious\n")
    plant = (
        "import os; os.remove('.git/config'); "
        f"os.symlink({str(victim)!r}, '.git/config'); "
        f"os.symlink({str(other)!r}, '.git/objects/info/alternates')"
    )
    command = ["python3", "-c", plant]
    with ScriptedOpenAI(hostile(command)) as server:
        result = run(repo, server, "l1", "docker", "sk-links", command)
    assert victim.read_text() == "precious\n" and other.read_text() == "also precious\n"
    assert not result.ok
    assert "tampered" in (result.reason or "") and "link or special file" in (result.reason or "")
    assert git(repo, "branch", "--list", "overlord/p1/l1") == ""
    assert_repo_clean(repo)


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_fifo_at_result_json_does_not_block_the_worker(
    repo: Path,
    docker_client: Any,  # noqa: F811
) -> None:
    command = ["python3", "-c", "import os; os.mkfifo('.git/overlord-result.json')"]
    with ScriptedOpenAI(hostile(command)) as server:
        started = time.monotonic()
        result = run(repo, server, "f1", "docker", "sk-fifo", command)
        elapsed = time.monotonic() - started
    assert elapsed < 60  # not the 180 s timeout: nothing waited on the FIFO
    assert not result.ok and "timed out" not in (result.reason or "")
    assert "special file at .git/overlord-result.json" in (result.reason or "")
    assert git(repo, "branch", "--list", "overlord/p1/f1") == ""


def test_the_job_a_minion_gets_names_only_the_relay(repo: Path) -> None:
    """What the minion is given: the relay socket; not the URL, not the key's variable."""
    show = (
        "import os; args = open(f'/proc/{os.getppid()}/cmdline', 'rb').read().split(b'\\0'); "
        "print(open(args[-3]).read())"
    )
    command = [sys.executable, "-c", show]
    with ScriptedOpenAI(hostile(command)) as server:
        result = run(repo, server, "j1", "process", "sk-job", command)
        job = json.loads(tool_output(server).split("\n", 1)[1])
        url = server.url
    assert result.ok, result
    assert job["relay"].endswith("/model.sock")
    assert "endpoint" not in job and "api_key_env" not in job and url not in json.dumps(job)


# --- choosing the backend ----------------------------------------------------------------------


def _configure(ws: Workspace, server: ScriptedOpenAI, minions: dict[str, Any]) -> Config:
    data = yaml.safe_load(ws.config_path.read_text())
    data["models"] = {"local-14b": endpoint(server, "local")}
    data["minions"] = minions
    ws.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return config_module.load(ws.config_path)


def test_code_work_with_no_engine_and_no_explicit_choice_is_refused_before_anything_runs(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reproduction: with no engine answering, minions used to run as host processes."""
    before = workspace_snapshot(workspace)
    with ScriptedOpenAI(WRITE_AND_FINISH) as server:
        config = _configure(workspace, server, {"docker_url": "unix:///nonexistent/docker.sock"})
        capsys.readouterr()
        code = main(["--config", str(workspace.config_path), "dispatch", TASK, "--yes"])
        err = capsys.readouterr().err
        assert server.chat_count == 0
    assert code == 2, err
    # (the scripted server may log a dropped health connection on stderr: keep ours)
    ours = [line for line in err.splitlines() if line.startswith(("error:", "hint:"))]
    assert len(ours) == 2, err
    assert "no Docker engine answers" in ours[0] and "backend: process" in ours[1]
    assert workspace_snapshot(workspace) == before
    assert config.state_url and Store(config.state_url).list_plans() == []


def test_the_host_backend_says_on_every_run_that_it_is_unsandboxed(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    with ScriptedOpenAI(WRITE_AND_FINISH) as server:
        config = _configure(workspace, server, {"backend": "process"})
        code, doc = dispatch(workspace, capsys, TASK)
        (request,) = server.requests[:1]
    assert code == 0, doc
    (step,) = only_plan(config).steps
    assert "UNSANDBOXED" in (step.output or "")
    assert "Authorization" not in request["headers"]  # no key configured: none sent


def test_a_worker_refuses_code_work_without_a_sandbox_before_acting() -> None:
    """Distributed: the worker that takes the step checks first (the CLI's host may have
    no engine while the workers do, so the CLI does not decide for them)."""
    config = Config.model_validate(
        {
            "broker_url": "redis://127.0.0.1:6379/0",
            "minions": {"docker_url": "unix:///nonexistent/d.sock"},
        }
    )
    step = DispatchStep(id="s1", kind=ActionKind.MINION, project="core", queue="local-14b")
    with pytest.raises(SandboxUnavailable, match="no Docker engine answers"):
        ACTION.run(Context(config, "p1", step), {"branch": "overlord/p1/s1"})
