"""Run a minion job (see ``overlord.minion``) in a Docker container or in a local process.

One entry point, ``run_minion``; each backend gives the minion a work copy of its own, so
the project's checkout and ``git status`` are never touched:

- ``process``: a detached ``git worktree`` of the repo's HEAD under
  ``<git-common-dir>/overlord-worktrees/``; worktrees share refs, so the minion's branch and
  commit stay in the repo when the worktree is removed afterwards.
- ``docker``: a temporary ``git clone --no-hardlinks`` (local branches and tags, HEAD
  detached), owned by the container's non-root user, is mounted at ``/work``; after success
  the branch is fetched back (fast-forward only). The repo itself is never mounted, so a
  container cannot touch its other refs, hooks or config. The engine must be local.

The API key travels only in the minion's environment (``secrets``: variable name -> value),
never in a command line, a label or the job file; its value is redacted from results. A run
that exceeds ``timeout`` is killed (process group or container) and reported as failed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from overlord import defaults
from overlord.config import Config
from overlord.errors import ConfigError, GitError, PlanError, RepoNotFound
from overlord.git import Git

log = logging.getLogger(__name__)

RESULT_PREFIX = "OVERLORD_RESULT "
WORK_DIR, JOB_DIR, OUT_DIR = "/work", "/job", "/out"
BINDS = ((WORK_DIR, "rw"), (JOB_DIR, "ro"), (OUT_DIR, "rw"))  # the work, job and out mounts
FALLBACK_UID = 1000  # the image's "minion" user, used when the repo belongs to root
PING_TIMEOUT = 1.0
KILL_GRACE = 15.0
REQUIRED = ("repo", "branch", "instruction", "endpoint", "model")
PASS_ENV = (  # the only variables of the caller's environment a process minion inherits
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "SSL_CERT_FILE", "SSL_CERT_DIR", "http_proxy",
    "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)  # fmt: skip


class Run(NamedTuple):  # how a minion process or container ended
    code: int | None
    out: str
    err: str
    timed_out: float | bool  # the timeout that expired, or False


class MinionResult(BaseModel):
    """What a minion run produced (the minion's own result plus the runner's view)."""

    model_config = ConfigDict(extra="ignore")

    status: str = "failed"  # succeeded | failed
    reason: str | None = None
    summary: str = ""
    files_changed: list[str] = Field(default_factory=list)
    commit: str | None = None
    branch: str | None = None
    turns: int = 0
    tokens: dict[str, int] = Field(default_factory=lambda: {"prompt": 0, "completion": 0})
    duration: float = 0.0
    logs_tail: str = ""
    backend: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def run_minion(
    job: dict[str, Any],
    *,
    backend: str,
    config: Config,
    timeout: float,
    secrets: Mapping[str, str],
) -> MinionResult:
    """Run one minion job to the end: a failed run is a result; only bad input raises."""
    if backend not in ("docker", "process"):
        raise ConfigError(f"unknown minion backend {backend!r}", "use 'docker' or 'process'")
    missing = [k for k in REQUIRED if not job.get(k)]
    if missing:
        raise PlanError(f"minion job is missing required field(s): {', '.join(missing)}")
    if timeout <= 0:
        raise PlanError(f"minion timeout must be positive, got {timeout!r}")
    prepared = dict(job)
    prepared.setdefault("max_turns", config.minions.max_turns)
    # the minion should stop on its own a little before the hard kill
    prepared.setdefault("max_seconds", max(1.0, timeout - min(10.0, timeout * 0.1)))
    key_env = prepared.get("api_key_env")
    if key_env and not secrets.get(key_env):
        reason = f"environment variable {key_env} is not set; export the model's API key in it"
        return MinionResult(branch=prepared["branch"], backend=backend, reason=reason)
    runner = _run_docker if backend == "docker" else _run_process
    started = time.monotonic()
    result = runner(prepared, config=config, timeout=timeout, secrets=dict(secrets))
    result.duration = round(time.monotonic() - started, 3)
    result.backend = backend
    return _redacted(result, secrets.values())


def docker_client(config: Config, *, timeout: float = 60) -> Any:
    """A docker-py client for ``minions.docker_url``, else ``$DOCKER_HOST``, else the default."""
    import docker  # lazily: the process backend must work without docker-py

    base_url = config.minions.docker_url or os.environ.get("DOCKER_HOST") or None
    return docker.DockerClient(base_url=base_url, timeout=timeout)


def choose_backend(config: Config) -> str:
    """``minions.backend`` when set, else docker when an engine answers a ping within 1 s."""
    if config.minions.backend:
        return config.minions.backend
    try:
        client = docker_client(config, timeout=PING_TIMEOUT)
        with contextlib.closing(client):
            return "docker" if client.ping() else "process"
    except Exception:  # docker-py missing, bad URL, no engine: all mean "no docker"
        return "process"


def _run_process(
    job: dict[str, Any], *, config: Config, timeout: float, secrets: dict[str, str]
) -> MinionResult:
    repo = _repo(job["repo"])
    branch = str(job["branch"])
    existed = repo.branch_exists(branch)
    with _worktree(repo, branch) as tree, _scratch() as scratch:
        job_file, result_file = Path(scratch, "job.json"), Path(scratch, "result.json")
        job_file.write_text(json.dumps({**job, "repo": str(tree)}), encoding="utf-8")
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ} | secrets
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as in the images: no __pycache__ in the commit
        env["OVERLORD_PARENT_PID"] = str(os.getpid())  # the minion stops if we die
        cmd = [sys.executable, "-m", "overlord.minion", str(job_file), str(result_file)]
        result = _read_result(result_file, _run_group(cmd, env, timeout), branch)
    if not result.ok and not existed and repo.branch_exists(branch):  # left by a killed run
        repo.run("branch", "-D", branch, check=False)
    return result


def _run_group(cmd: list[str], env: dict[str, str], timeout: float) -> Run:
    """Run cmd in its own process group; on timeout kill the whole group."""
    proc = subprocess.Popen(
        cmd, cwd=Path(__file__).resolve().parent.parent,  # where the overlord package is
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, errors="replace", start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
        return Run(proc.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
            out, err = "", ""
        return Run(proc.returncode, out, err, timeout)
    except BaseException:  # KeyboardInterrupt and the like: leave nothing running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise


@contextlib.contextmanager
def _worktree(repo: Git, branch: str) -> Iterator[Path]:
    common = Path(repo.run("rev-parse", "--path-format=absolute", "--git-common-dir"))
    parent = common / defaults.OWN_WORKTREES
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", branch).strip("-.")
    path = parent / f"{slug}-{uuid.uuid4().hex[:8]}"
    parent.mkdir(exist_ok=True)
    for stale in parent.glob(f"{slug}-*"):  # left by an earlier attempt whose worker died
        repo.run("worktree", "remove", "--force", str(stale), check=False)
        shutil.rmtree(stale, ignore_errors=True)
    repo.run("worktree", "prune", check=False)
    repo.run("worktree", "add", "--detach", "--quiet", str(path), "HEAD")
    try:
        yield path
    finally:
        repo.run("worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        repo.run("worktree", "prune", check=False)
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty


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
    job: Mapping[str, Any],
    *,
    config: Config,
    secrets: Mapping[str, str],
    mounts: tuple[Path, Path, Path],
    user: tuple[int, int],
    redact: bool = True,
) -> dict[str, Any]:
    """The keyword arguments of ``containers.run`` (work, job, out dirs mounted).

    Secret values are shown as ``***`` unless ``redact`` is False (the real call only).
    """
    local = (job.get("tier") or "local") == "local"
    return {
        "image": config.minions.image_local if local else config.minions.image_cloud,
        "command": [f"{JOB_DIR}/job.json", f"{OUT_DIR}/result.json"],
        "detach": True,
        "user": f"{user[0]}:{user[1]}",
        "working_dir": WORK_DIR,
        "environment": {k: ("***" if redact else v) for k, v in secrets.items()},
        "labels": labels_for(job),
        "volumes": {
            str(path): {"bind": bind, "mode": mode}
            for path, (bind, mode) in zip(mounts, BINDS, strict=True)
        },
        "mem_limit": config.minions.mem_limit,
        "nano_cpus": int(config.minions.cpus * 1_000_000_000),
        "pids_limit": 1024,
        "network_mode": "host",  # 127.0.0.1 endpoints are the host's
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }


def _run_docker(
    job: dict[str, Any], *, config: Config, timeout: float, secrets: dict[str, str]
) -> MinionResult:
    import docker.errors
    import requests

    repo = _repo(job["repo"])
    branch = str(job["branch"])
    user = container_user(repo.path)
    with _scratch() as scratch:
        mounts = (Path(scratch, "work"), Path(scratch, "job"), Path(scratch, "out"))
        clone = _clone(repo, mounts[0])
        pristine = (mounts[0] / ".git" / "config").read_bytes()
        mounts[1].mkdir()
        mounts[2].mkdir()
        mounts[1].joinpath("job.json").write_text(json.dumps({**job, "repo": WORK_DIR}))
        if os.geteuid() == 0:  # hand the work and out dirs to the container's user
            for path in [*mounts[1:], mounts[1] / "job.json", *_tree(mounts[0])]:
                os.chown(path, *user, follow_symlinks=False)
        spec = functools.partial(
            describe_container_spec, job, config=config, secrets=secrets, mounts=mounts, user=user
        )
        log.debug("minion container: %s", spec())
        kwargs = spec(redact=False)
        try:
            run = _run_container(kwargs, config, timeout)
        except docker.errors.ImageNotFound:
            hint = "build it with .ci/docker.sh or `docker build -f workers/Dockerfile.TIER .`"
            return MinionResult(branch=branch, reason=f"image {kwargs['image']} not found; {hint}")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return MinionResult(branch=branch, reason=f"docker engine error: {exc}")
        result = _read_result(mounts[2] / "result.json", run, branch)
        if result.ok:
            _fetch_back(repo, clone.path, branch, result, pristine)
    return result


def _run_container(kwargs: dict[str, Any], config: Config, timeout: float) -> Run:
    """Run, wait (kill on timeout), collect stdout and stderr apart, always remove."""
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
                    container.wait(timeout=KILL_GRACE)
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        finally:
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                container.remove(force=True)
        return Run(code, out, err, timed_out)
    finally:
        client.close()


def _tree(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        yield from (Path(dirpath, name) for name in dirnames + filenames)


def _clone(repo: Git, dest: Path) -> Git:
    """A standalone copy of the repo: its local branches and tags, HEAD detached."""
    top = repo.run("rev-parse", "--show-toplevel")
    Git(dest.parent).run("clone", "--quiet", "--no-hardlinks", "--no-checkout", top, dest.name)
    clone = Git(dest)
    refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
    clone.run("fetch", "--quiet", "--update-head-ok", "origin", *refspecs)
    clone.run("checkout", "--quiet", "--detach", repo.head())
    clone.run("remote", "remove", "origin")
    for key in ("user.name", "user.email"):
        value = repo.run("config", key, check=False)
        if value:
            clone.run("config", key, value)
    return clone


def _fetch_back(repo: Git, clone: Path, branch: str, result: MinionResult, config: bytes) -> None:
    """Fetch the branch from the clone, now owned by the container's user: git refuses it
    unless trusted (``-c safe.directory`` does not reach upload-pack), so trust it through a
    temporary global config, after restoring its config and dropping planted alternates."""
    git_dir = clone / ".git"  # upload-pack checks ownership of the git dir itself
    (git_dir / "config").write_bytes(config)
    (git_dir / "objects" / "info" / "alternates").unlink(missing_ok=True)
    trust = clone.parent / "trust.gitconfig"  # replaces the user's global config for one fetch
    trust.write_text(f"[safe]\n\tdirectory = {git_dir}\n")
    ref = f"refs/heads/{branch}"
    try:
        repo.run("fetch", "--quiet", "--no-tags", str(git_dir), f"{ref}:{ref}",
                 env={"GIT_CONFIG_GLOBAL": str(trust)})  # fmt: skip
    except GitError as exc:
        result.status = "failed"
        result.reason = f"could not bring branch {branch} back into {repo.path}: {exc.message}"


def _repo(path: Any) -> Git:
    repo = Git(Path(str(path)).expanduser().resolve())
    if not repo.is_repo():
        raise RepoNotFound(f"{repo.path}: not a git repository", "check the project's path")
    return repo


def _scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="overlord-minion-", ignore_cleanup_errors=True)


def _read_result(result_file: Path, run: Run, branch: str) -> MinionResult:
    """The minion's result: the result file, else the OVERLORD_RESULT line, else a failure."""
    code, out, err, timed_out = run
    tail = err[-defaults.OUTPUT_TAIL :]
    if timed_out:
        return MinionResult(branch=branch, reason=f"timed out after {timed_out:g}s", logs_tail=tail)
    data: Any = None
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(result_file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
        with contextlib.suppress(ValueError, IndexError):
            data = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    if not isinstance(data, dict):
        last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "no output")
        reason = f"minion exited with code {code} without a result: {last.strip()[:300]}"
        return MinionResult(branch=branch, reason=reason, logs_tail=tail)
    try:
        return MinionResult.model_validate({**data, "logs_tail": tail})
    except ValueError as exc:
        return MinionResult(branch=branch, reason=f"malformed minion result: {exc}", logs_tail=tail)


def _redacted(result: MinionResult, secrets: Any) -> MinionResult:
    text = result.model_dump_json()
    for value in secrets:
        if value:
            text = text.replace(json.dumps(value)[1:-1], "***")
    return MinionResult.model_validate_json(text)
