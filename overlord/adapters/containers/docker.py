"""The ``docker`` minion backend: a minion job (see ``overlord.minion_runtime.agent``) in a Docker sandbox;
``backend_named`` gives it, or on request the ``process`` backend (``overlord.adapters.containers.process``),
and ``choose_backend`` decides which (``wiring.minion_backend`` asks both).

Every run gets its own model relay (``overlord.adapters.containers.relay``): the minion is given the relay's
unix socket, never the API key or the endpoint's URL. The ``docker`` backend (the default)
starts the container with no network (``network_mode: none``), no capabilities,
``no-new-privileges``, a non-root user, a read-only root file system with a tmpfs at /tmp,
CPU, memory and pid limits and capped logs; only two things are mounted: a temporary
clone of the project at /work and the relay's private directory (socket and job file) at
/relay, read-only. The branch comes back through ``minion_clone.fetch_back`` and the
result through ``minion_result.read_result``, neither trusting what the container left.

With no ``minions.backend`` and no Docker engine answering, code work is refused
(``SandboxUnavailable``) — never silently run on the host.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overlord import defaults
from overlord.adapters.containers import job as minion_job
from overlord.adapters.containers.clone import RESULT_FILE, clone, fetch_back
from overlord.adapters.containers.relay import SOCKET_NAME, ModelRelay
from overlord.adapters.containers.result import MinionResult, Run, read_result
from overlord.adapters.git.git import Git
from overlord.core.config import Config
from overlord.errors import ConfigError, SandboxUnavailable

if TYPE_CHECKING:
    from overlord.ports import MinionBackend
log = logging.getLogger(__name__)

WORK_DIR, RELAY_DIR = "/work", "/relay"
FALLBACK_UID = 1000  # the image's "minion" user, used when the repo belongs to root
__all__ = [
    "DockerBackend",
    "MinionResult",
    "Run",
    "backend_named",
    "choose_backend",
    "describe_container_spec",
    "run_minion",
]


class DockerBackend(minion_job.RelayedBackend):
    """The ``docker`` minion backend (``ports.MinionBackend``): a sealed container."""

    name = "docker"

    def owner(self, repo: Git) -> tuple[int, int]:
        return container_user(repo.path)

    def sandbox(self, job: dict[str, Any], run: minion_job.Sandbox) -> MinionResult:
        assert run.owner is not None
        return _run_docker(job, relay=run.relay, config=self.config, timeout=run.timeout,
                           repo=run.repo, user=run.owner)  # fmt: skip


def backend_named(name: str, config: Config) -> MinionBackend:
    """The minion backend called ``name`` (``docker`` or ``process``)."""
    if name == "docker":
        return DockerBackend(config)
    if name == "process":
        from overlord.adapters.containers.process import ProcessBackend

        return ProcessBackend(config)
    raise ConfigError(f"unknown minion backend {name!r}", "use 'docker' or 'process'")


def run_minion(
    job: dict[str, Any],
    *,
    backend: str,
    config: Config,
    timeout: float,
    secrets: Mapping[str, str],
) -> MinionResult:
    """Run one minion job to the end on the backend called ``backend``: a failed run is a
    result; only bad input raises.

    ``job`` names the endpoint (``endpoint``, ``api_key_env``); the relay keeps both and
    the key's value (from ``secrets``); the minion's own job has only the relay socket."""
    return backend_named(backend, config).run(job, timeout=timeout, secrets=secrets)


def docker_client(config: Config, *, timeout: float = 60) -> Any:
    """A docker-py client for ``minions.docker_url``, else ``$DOCKER_HOST``, else the default."""
    import docker  # lazily: the process backend must work without docker-py

    base_url = config.minions.docker_url or os.environ.get("DOCKER_HOST") or None
    return docker.DockerClient(base_url=base_url, timeout=timeout)


def engine_answers(config: Config) -> bool:
    try:
        client = docker_client(config, timeout=defaults.DOCKER_PING_TIMEOUT)
        with contextlib.closing(client):
            return bool(client.ping())
    except Exception:  # docker-py missing, bad URL, no engine: all mean "no docker"
        return False


def choose_backend(config: Config) -> str:
    """``minions.backend`` when set; else docker when an engine answers a ping within 1 s;
    else ``SandboxUnavailable`` (exit 2): code work never falls back to the host."""
    if config.minions.backend:
        return config.minions.backend
    if engine_answers(config):
        return "docker"
    where = config.minions.docker_url or os.environ.get("DOCKER_HOST") or "the default socket"
    raise SandboxUnavailable(
        f"code work runs minions in Docker containers, and no Docker engine answers at {where}",
        "start Docker (or point minions.docker_url / DOCKER_HOST at one), or set "
        "`minions: {backend: process}` in the config to run minions unsandboxed on this host",
    )


def container_user(repo: Path) -> tuple[int, int]:
    """uid/gid the container runs as: the caller's if not root, else the repo owner's."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    stat = repo.stat()
    return (stat.st_uid, stat.st_gid) if stat.st_uid else (FALLBACK_UID, FALLBACK_UID)


def labels_for(job: Mapping[str, Any]) -> dict[str, str]:
    """Labels: plan and step from the job (else from branch overlord/<plan>/<step>), tier."""
    parts = str(job.get("branch", "")).split("/")
    plan, step = parts[1:3] if len(parts) == 3 and parts[0] == "overlord" else ("", "")
    return {"overlord.minion": "1", "overlord.plan": str(job.get("plan") or plan),
            "overlord.step": str(job.get("step") or step), "overlord.branch": str(job["branch"]),
            "overlord.tier": str(job.get("tier") or "local")}  # fmt: skip


def describe_container_spec(
    job: Mapping[str, Any], *, config: Config, work: Path, relay_dir: Path, user: tuple[int, int]
) -> dict[str, Any]:
    """The keyword arguments of ``containers.run``: nothing secret in them, ever."""
    minions = config.minions
    local = (job.get("tier") or "local") == "local"
    return {
        "image": minions.image_local if local else minions.image_cloud,
        "command": [f"{RELAY_DIR}/job.json", f"{WORK_DIR}/{RESULT_FILE}"],
        "detach": True,
        "user": f"{user[0]}:{user[1]}",
        "working_dir": WORK_DIR,
        "environment": {"HOME": "/tmp", "TMPDIR": "/tmp"},
        "labels": labels_for(job),
        "volumes": {
            str(work): {"bind": WORK_DIR, "mode": "rw"},
            str(relay_dir): {"bind": RELAY_DIR, "mode": "ro"},
        },
        "network_mode": "none",  # the relay socket is the only way out
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={minions.tmpfs_size},mode=1777"},
        "mem_limit": minions.mem_limit,
        "memswap_limit": minions.mem_limit,
        "nano_cpus": int(minions.cpus * 1_000_000_000),
        "pids_limit": minions.pids_limit,
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
    }


def _run_docker(
    job: dict[str, Any],
    *,
    relay: ModelRelay,
    config: Config,
    timeout: float,
    repo: Git,
    user: tuple[int, int],
) -> MinionResult:
    import docker.errors
    import requests

    branch = str(job["branch"])
    with _scratch() as tmp:
        work = Path(tmp, "work")
        pristine = clone(repo, work)
        minion_job = {**job, "repo": WORK_DIR, "relay": f"{RELAY_DIR}/{SOCKET_NAME}"}
        relay.directory.joinpath("job.json").write_text(json.dumps(minion_job))
        if os.geteuid() == 0:  # hand the clone to the container's user
            for path in _tree(work):
                os.chown(path, *user, follow_symlinks=False)
        kwargs = describe_container_spec(
            job, config=config, work=work, relay_dir=relay.directory, user=user
        )
        log.debug("minion container: %s", kwargs)
        try:
            run = _run_container(kwargs, config, timeout)
        except docker.errors.ImageNotFound:
            hint = "build it with .ci/docker.sh or `docker build -f workers/Dockerfile.TIER .`"
            return MinionResult(branch=branch, reason=f"image {kwargs['image']} not found; {hint}")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return MinionResult(branch=branch, reason=f"docker engine error: {exc}")
        result = read_result(work, RESULT_FILE, run, branch)
        if result.ok:
            problem = fetch_back(repo, work, branch, pristine)
            if problem:
                result.status, result.reason = "failed", problem
    return result


def _run_container(kwargs: dict[str, Any], config: Config, timeout: float) -> Run:
    """Run, wait (kill on timeout), collect the (capped) logs, always remove."""
    import docker.errors
    import requests

    client = docker_client(config, timeout=max(60.0, timeout + 30))
    try:
        container = client.containers.run(**kwargs)
        code: int | None = None
        timed_out: float | bool = False
        try:
            try:
                code = int(container.wait(timeout=timeout).get("StatusCode", -1))
            except requests.RequestException:  # what docker-py raises when wait times out
                timed_out = timeout
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
                with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                    container.wait(timeout=defaults.CONTAINER_KILL_GRACE)
            # one call for both streams (the OVERLORD_RESULT line is found among them)
            logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                container.remove(force=True)
        return Run(code, logs, logs, timed_out)
    finally:
        client.close()


@contextlib.contextmanager
def _scratch() -> Any:
    """A private temporary directory, removed afterwards in the background (removing a
    clone takes longer than anything else the round trip does on the host)."""
    path = tempfile.mkdtemp(prefix="overlord-minion-")
    try:
        yield path
    finally:
        cleanup = threading.Thread(target=shutil.rmtree, args=(path, True), daemon=True)
        cleanup.start()
        atexit.register(cleanup.join, 30)  # a process that ends soon still removes it


def _tree(root: Path) -> Any:
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        yield from (Path(dirpath, name) for name in dirnames + filenames)
