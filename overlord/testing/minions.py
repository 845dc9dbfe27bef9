"""``ScriptedMinions``: a minion backend (``ports.MinionBackend``) for unit tests.

It runs the minion's own runtime (``overlord.minion_runtime.agent``) in this process, in a detached
worktree of the repository (as the ``process`` backend does), and answers its model
requests from a script instead of a relay and an endpoint: no container, no process, no
socket, no HTTP. The script speaks the entries ``tests/openai_server.py`` serves:
``{"tool_calls": [{"name": ..., "arguments": {...}}]}``, ``{"content": "text"}``,
``{"status": 500, "body": {...}}``, or a callable ``f(request) -> entry``; when it runs
out, the model says "done". The job is checked, and the key handled, as every backend
does (``minion_job``); the key's value only reaches ``requests``, as the relay adds it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from overlord import defaults
from overlord.adapters.containers import job as minion_job
from overlord.adapters.containers.process import worktree
from overlord.adapters.containers.result import MinionResult, redacted
from overlord.minion_runtime.agent import Minion

if TYPE_CHECKING:
    from overlord.ports import MinionBackend
Entry = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
CHAT = "/v1/chat/completions"


class ScriptedMinions:
    """The minion runtime in this process, its model a script."""

    name = "scripted"

    def __init__(self, script: list[Entry] | None = None, *, max_turns: int = 20) -> None:
        self.script: list[Entry] = list(script or [])
        self.max_turns = max_turns
        self.requests: list[dict[str, Any]] = []  # {"json": body, "key": the key's value}
        self.jobs: list[dict[str, Any]] = []  # every job run, as given
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def add(self, *entries: Entry) -> None:
        with self._lock:
            self.script.extend(entries)

    def run(
        self, job: dict[str, Any], *, timeout: float, secrets: Mapping[str, str]
    ) -> MinionResult:
        self.jobs.append(dict(job))
        ready = minion_job.prepare(
            job, backend=self.name, max_turns=self.max_turns, timeout=timeout, secrets=secrets
        )
        if isinstance(ready, MinionResult):
            return ready
        started = time.monotonic()
        repo = minion_job.repository(ready.job["repo"])
        branch = str(ready.job["branch"])
        existed = repo.branch_exists(branch)
        calls: list[str] = []
        with worktree(repo, branch) as tree:
            minion = _InProcess({**ready.job, "repo": str(tree), "relay": "in-process"})
            minion.answer = lambda body: self._answer(body, ready.key, calls)
            fields = minion.run()
        if fields["status"] != "succeeded" and not existed and repo.branch_exists(branch):
            repo.run("branch", "-D", branch, check=False)
        tail = "".join(f"[minion] {line}\n" for line in minion.lines)[-defaults.OUTPUT_TAIL :]
        result = MinionResult.model_validate({**fields, "logs_tail": tail, "relay_calls": calls})
        result.duration = round(time.monotonic() - started, 3)
        result.backend = self.name
        return redacted(result, [ready.key])

    def _answer(self, body: dict[str, Any], key: str, calls: list[str]) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append({"json": body, "key": key})
            entry = self.script.pop(0) if self.script else {"content": "done"}
        said = dict(entry(body) if callable(entry) else entry)
        status = int(said.get("status", 200))
        if status >= 400:
            data = json.dumps(said.get("body", {"error": {"message": "scripted failure"}}))
        else:
            message: dict[str, Any] = {"role": "assistant", "content": said.get("content")}
            if said.get("tool_calls"):
                message["tool_calls"] = [self._call(c) for c in said["tool_calls"]]
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            data = json.dumps({"choices": [choice], "usage": USAGE})
        sent = len(json.dumps(body))
        calls.append(f"POST {CHAT} -> {status} {sent} B out, {len(data)} B back, 0.00 s")
        return status, data.encode()

    def _call(self, call: dict[str, Any]) -> dict[str, Any]:
        arguments = call.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        name = call["name"]
        return {"id": f"call_{next(self._ids)}", "type": "function",
                "function": {"name": name, "arguments": arguments}}  # fmt: skip


class _InProcess(Minion):
    """The minion runtime with its model requests answered in this process."""

    answer: Callable[[dict[str, Any]], tuple[int, bytes]]

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(job)
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def post(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        return self.answer(json.loads(data))


if TYPE_CHECKING:  # mypy checks that it is a MinionBackend
    _check: MinionBackend = ScriptedMinions()
