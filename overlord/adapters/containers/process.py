"""The ``process`` minion backend: the minion runs as a host process, UNSANDBOXED.

Only when ``minions.backend: process`` is set explicitly (``containers.choose_backend``);
``ProcessBackend`` is its ``ports.MinionBackend``.
What it does give:

- a detached ``git worktree`` of the repo's HEAD under ``<git-common-dir>/overlord-worktrees/``
  as the working directory (worktrees share refs, so the branch and commit stay);
- the model only through the relay (``overlord.adapters.containers.relay``): no API key and no endpoint URL in
  the minion's environment, arguments or job file;
- a new session (``proc.run``: its process group stopped whole on timeout or when the
  worker dies, output bounded), a private HOME and TMPDIR that are removed afterwards, a minimal environment;
- the worker marks itself non-dumpable first, so a process of the same user cannot read
  the worker's ``/proc/<pid>/environ`` or attach to it.

What it cannot give: code runs with the worker's user, network and file system; it can
write anywhere that user can. Use Docker for anything you would not run yourself.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from overlord import defaults
from overlord.adapters.commands import proc
from overlord.adapters.containers import job as minion_job
from overlord.adapters.containers.relay import ModelRelay
from overlord.adapters.containers.result import MinionResult, Run, read_result
from overlord.adapters.git.git import Git

log = logging.getLogger(__name__)

UNSANDBOXED = (
    "minions.backend is 'process': the minion and the code it writes run UNSANDBOXED on "
    "this host, as this user"
)
PASS_ENV = ("PATH", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
PR_SET_DUMPABLE = 4


def protect_worker() -> bool:
    """Make this process non-dumpable (Linux): same-user processes then cannot read its
    environment or memory through /proc or ptrace. Returns whether it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ProcessBackend(minion_job.RelayedBackend):
    """The ``process`` minion backend (``ports.MinionBackend``): a host process, UNSANDBOXED."""

    name = "process"

    def sandbox(self, job: dict[str, Any], run: minion_job.Sandbox) -> MinionResult:
        return run_process(job, relay=run.relay, timeout=run.timeout, repo=run.repo)


def run_process(
    job: dict[str, Any], *, relay: ModelRelay, timeout: float, repo: Git
) -> MinionResult:
    branch = str(job["branch"])
    existed = repo.branch_exists(branch)
    log.warning("%s (step branch %s)", UNSANDBOXED, branch)
    protect_worker()
    with worktree(repo, branch) as tree, _private() as scratch:
        home = scratch / "home"
        (home / "tmp").mkdir(parents=True, mode=0o700)
        job_file = scratch / "job.json"
        job_file.write_text(json.dumps({**job, "repo": str(tree), "relay": str(relay.socket_path)}))
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env.update(_identity(repo), HOME=str(home), TMPDIR=str(home / "tmp"))
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as in the images: no __pycache__ in the commit
        cmd = [
            sys.executable,
            "-m",
            "overlord.minion_runtime.agent",
            str(job_file),
            str(scratch / "result.json"),
        ]
        result = read_result(scratch, "result.json", _run_group(cmd, env, timeout), branch)
    if not result.ok and not existed and repo.branch_exists(branch):  # left by a killed run
        repo.run("branch", "-D", branch, check=False)
    return result


def _identity(repo: Git) -> dict[str, str]:
    """The repository's commit identity (the minion's HOME hides the person's own config)."""
    env: dict[str, str] = {}
    name, email = (repo.run("config", key, check=False) for key in ("user.name", "user.email"))
    if name and email:
        env.update(GIT_AUTHOR_NAME=name, GIT_COMMITTER_NAME=name)
        env.update(GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_EMAIL=email)
    return env


def _run_group(cmd: list[str], env: dict[str, str], timeout: float) -> Run:
    """Run cmd in its own session under ``proc.run``'s guard: on timeout, or when this
    worker dies, the whole process group is stopped; output kept bounded."""
    here = Path(__file__).resolve().parent.parent  # where the overlord package is
    outcome = proc.run(cmd, cwd=here, timeout=timeout, env=env)
    return Run(
        outcome.code, outcome.output, outcome.output, timeout if outcome.timed_out else False
    )


@contextlib.contextmanager
def _private() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="overlord-minion-"))  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def worktree(repo: Git, branch: str) -> Iterator[Path]:
    """A detached worktree of ``repo``'s HEAD for a minion working on ``branch``, removed
    afterwards (one an earlier, killed attempt left is removed first)."""
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
