"""The minion backends' contract (``ports.MinionBackend``), once per implementation: Docker
(a sandboxed container, on the engine .ci/docker.sh starts), the host process, and the
in-process scripted backend unit tests use. The real ones reach a scripted OpenAI server
through their relay; the scripted one reads the same script."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from overlord import wiring
from overlord.adapters.containers.docker import DockerBackend, backend_named
from overlord.adapters.containers.process import ProcessBackend
from overlord.core.config import Config
from overlord.errors import PlanError, RepoNotFound
from overlord.ports import MinionBackend
from overlord.testing.minions import ScriptedMinions
from tests.docker_env import docker_client, docker_url  # noqa: F401  (fixture)
from tests.kit import git, one_commit_repo
from tests.openai_server import ScriptedOpenAI

SECRET = "sk-contract-SECRET-5521"
KEY_ENV = "OVERLORD_CONTRACT_KEY"
NEW_APP = "def answer():\n    return 42\n"


class Model:
    """A backend with a scripted model: ``serve(script)`` yields the job's endpoint URL."""

    def __init__(self, backend: MinionBackend) -> None:
        self.backend = backend
        self.chat_count = 0
        self.keys: set[str | None] = set()

    @contextmanager
    def serve(self, script: list[Any]) -> Iterator[str]:
        if isinstance(self.backend, ScriptedMinions):
            self.backend.script = list(script)
            yield "http://127.0.0.1:9/v1"  # never dialled
            self.chat_count = len(self.backend.requests)
            self.keys = {f"Bearer {r['key']}" for r in self.backend.requests}
            return
        with ScriptedOpenAI(script) as server:
            yield server.url
            self.chat_count = server.chat_count
            self.keys = {r["headers"].get("Authorization") for r in server.requests}


@pytest.fixture(
    params=[
        pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.slow]),
        "process",
        "scripted",
    ]
)
def model(request: pytest.FixtureRequest) -> Model:
    if request.param == "docker":
        request.getfixturevalue("docker_client")  # skips (fails in CI) without an engine
        return Model(
            DockerBackend(Config.model_validate({"minions": {"docker_url": docker_url()}}))
        )
    if request.param == "process":
        return Model(ProcessBackend(Config.model_validate({"minions": {"backend": "process"}})))
    return Model(ScriptedMinions())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return one_commit_repo(tmp_path / "repo")


def job(repo: Path, endpoint: str, step: str, **overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "repo": str(repo),
        "branch": f"overlord/p1/{step}",
        "base": "main",
        "task_type": "feature",
        "instruction": "Make answer return 42",
        "endpoint": endpoint,
        "model": "scripted-model",
        "api_key_env": KEY_ENV,
        "test_command": None,
        "max_turns": 6,
        "request_timeout": 30,
        "tier": "local",
    }
    return {**out, **overrides}


def untouched(repo: Path) -> None:
    """The person's checkout as it was: on main, clean, no worktree left."""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_a_minion_lands_one_commit_on_its_branch(model: Model, repo: Path) -> None:
    write = {"name": "write_file", "arguments": {"path": "app.py", "content": NEW_APP}}
    script = [{"tool_calls": [write]}, {"content": f"Changed it; my key is {SECRET}"}]
    with model.serve(script) as endpoint:
        result = model.backend.run(
            job(repo, endpoint, "c1"), timeout=120, secrets={KEY_ENV: SECRET}
        )
    branch = "overlord/p1/c1"
    assert result.ok, result
    assert result.branch == branch and result.backend == model.backend.name
    assert result.commit == git(repo, "rev-parse", f"refs/heads/{branch}")
    assert git(repo, "rev-parse", f"{branch}~1") == git(repo, "rev-parse", "main")
    assert git(repo, "log", "-1", "--format=%s", branch).startswith("overlord: feature: ")
    assert result.files_changed == ["app.py"]
    assert git(repo, "show", f"{branch}:app.py") + "\n" == NEW_APP
    assert result.turns == 2 and len(result.relay_calls) == 2 and result.duration > 0
    assert model.keys == {f"Bearer {SECRET}"}  # the key reached the model, added outside
    assert SECRET not in result.model_dump_json() and "***" in result.summary
    untouched(repo)


def test_a_failing_endpoint_leaves_no_branch(model: Model, repo: Path) -> None:
    with model.serve([{"status": 500}]) as endpoint:
        result = model.backend.run(
            job(repo, endpoint, "c2"), timeout=120, secrets={KEY_ENV: SECRET}
        )
    assert not result.ok and "HTTP 500" in (result.reason or "")
    assert result.backend == model.backend.name
    assert git(repo, "branch", "--list", "overlord/p1/c2") == ""
    untouched(repo)


def test_a_missing_key_fails_before_anything_runs(model: Model, repo: Path) -> None:
    with model.serve([]) as endpoint:
        result = model.backend.run(job(repo, endpoint, "c3"), timeout=60, secrets={})
    assert not result.ok and KEY_ENV in (result.reason or "")
    assert model.chat_count == 0
    assert git(repo, "branch", "--list", "overlord/p1/c3") == ""


def test_bad_jobs_are_refused(model: Model, repo: Path, tmp_path: Path) -> None:
    good = job(repo, "http://127.0.0.1:9/v1", "c4")
    with pytest.raises(PlanError, match="instruction"):
        model.backend.run({**good, "instruction": ""}, timeout=60, secrets={KEY_ENV: SECRET})
    with pytest.raises(PlanError, match="timeout"):
        model.backend.run(good, timeout=0, secrets={KEY_ENV: SECRET})
    with pytest.raises(RepoNotFound):
        model.backend.run({**good, "repo": str(tmp_path)}, timeout=60, secrets={KEY_ENV: SECRET})


def test_the_factory_follows_the_configuration() -> None:
    process = Config.model_validate({"minions": {"backend": "process"}})
    assert isinstance(wiring.minion_backend(process), ProcessBackend)
    docker = Config.model_validate({"minions": {"backend": "docker"}})
    assert isinstance(wiring.minion_backend(docker), DockerBackend)
    assert isinstance(backend_named("process", docker), ProcessBackend)
    scripted = ScriptedMinions()
    with wiring.replaced_minions(scripted):
        assert wiring.minion_backend(process) is scripted
    assert isinstance(wiring.minion_backend(process), ProcessBackend)
