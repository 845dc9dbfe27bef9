"""A minion job checked, and run behind its model relay: what every minion backend shares.

``prepare`` checks the job (bad input raises) and takes the endpoint, the name of the
key's variable and the key's value out of it: the minion's own job keeps neither. A
missing key is a failed result, before anything runs. ``run_relayed`` serves the relay
(``overlord.adapters.containers.relay``) for one run of a backend's sandbox and completes the result: the
relay's log of model calls, the duration, the backend, the key redacted.
``RelayedBackend`` is both steps around a backend's own sandbox (``docker``, ``process``).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlord import defaults
from overlord.adapters.containers.relay import ModelRelay
from overlord.adapters.containers.result import MinionResult, redacted
from overlord.adapters.git.git import Git
from overlord.core.config import Config
from overlord.errors import PlanError, RepoNotFound

REQUIRED = ("repo", "branch", "instruction", "endpoint", "model")


@dataclass
class Prepared:
    """A checked job: ``job`` is the minion's own (no endpoint, no key, no key name)."""

    job: dict[str, Any]
    endpoint: str
    name: str  # the endpoint's name, for the relay's messages
    key: str
    wait: float  # seconds the relay waits on the model per call


def prepare(
    job: Mapping[str, Any],
    *,
    backend: str,
    max_turns: int,
    timeout: float,
    secrets: Mapping[str, str],
) -> Prepared | MinionResult:
    """The job checked (``PlanError`` for bad input); a failed result when the key's
    variable names no value in ``secrets``."""
    missing = [k for k in REQUIRED if not job.get(k)]
    if missing:
        raise PlanError(f"minion job is missing required field(s): {', '.join(missing)}")
    if timeout <= 0:
        raise PlanError(f"minion timeout must be positive, got {timeout!r}")
    prepared = dict(job)
    endpoint = str(prepared.pop("endpoint"))
    key_env = prepared.pop("api_key_env", None)
    name = str(prepared.pop("endpoint_name", None) or urllib.parse.urlsplit(endpoint).netloc)
    prepared.setdefault("max_turns", max_turns)
    # the minion should stop on its own a little before the hard kill
    prepared.setdefault("max_seconds", max(1.0, timeout - min(10.0, timeout * 0.1)))
    wait = float(prepared.get("request_timeout") or 120)
    prepared["request_timeout"] = wait + defaults.MINION_RELAY_MARGIN
    key = secrets.get(key_env, "") if key_env else ""
    if key_env and not key:
        reason = f"environment variable {key_env} is not set; export the model's API key in it"
        return MinionResult(branch=prepared["branch"], backend=backend, reason=reason)
    return Prepared(prepared, endpoint, name, key, wait)


def repository(path: Any) -> Git:
    """The job's repository; ``RepoNotFound`` when it is not one."""
    repo = Git(Path(str(path)).expanduser().resolve())
    if not repo.is_repo():
        raise RepoNotFound(f"{repo.path}: not a git repository", "check the project's path")
    return repo


def run_relayed(
    ready: Prepared,
    *,
    backend: str,
    owner: tuple[int, int] | None,
    sandbox: Callable[[dict[str, Any], ModelRelay], MinionResult],
) -> MinionResult:
    """Run ``sandbox(job, relay)`` with the relay serving, and complete its result."""
    started = time.monotonic()
    job = ready.job
    relay = ModelRelay(ready.endpoint, str(job["model"]), ready.key, name=ready.name,
                       timeout=ready.wait, max_calls=int(job["max_turns"]), owner=owner)  # fmt: skip
    with relay:
        result = sandbox(job, relay)
    result.relay_calls = relay.log_lines()
    result.duration = round(time.monotonic() - started, 3)
    result.backend = backend
    return redacted(result, [ready.key])


@dataclass(frozen=True)
class Sandbox:
    """Where a backend runs one minion: its relay, its time, its repository, its user."""

    relay: ModelRelay
    timeout: float
    repo: Git
    owner: tuple[int, int] | None  # uid/gid that must reach the relay (None: ours)


class RelayedBackend:
    """A minion backend whose minion reaches the model through a relay: ``run`` prepares
    the job and serves the relay around ``sandbox``, which each backend provides."""

    name = ""

    def __init__(self, config: Config) -> None:
        self.config = config

    def owner(self, repo: Git) -> tuple[int, int] | None:
        """uid/gid the sandbox runs as, who must be able to reach the relay (None: us)."""
        return None

    def sandbox(self, job: dict[str, Any], run: Sandbox) -> MinionResult:
        """Run the minion's own ``job`` to its end, reaching the model through ``run.relay``."""
        raise NotImplementedError

    def run(
        self, job: dict[str, Any], *, timeout: float, secrets: Mapping[str, str]
    ) -> MinionResult:
        ready = prepare(
            job,
            backend=self.name,
            max_turns=self.config.minions.max_turns,
            timeout=timeout,
            secrets=secrets,
        )
        if isinstance(ready, MinionResult):
            return ready
        repo = repository(ready.job["repo"])
        owner = self.owner(repo)

        def sandbox(own: dict[str, Any], relay: ModelRelay) -> MinionResult:
            return self.sandbox(own, Sandbox(relay, timeout, repo, owner))

        return run_relayed(ready, backend=self.name, owner=owner, sandbox=sandbox)
