"""Minion runtime: a tool-calling agent that edits one git repository (stdlib and git only;
its tools are in ``tools``).

``python -m overlord.minion_runtime.agent JOB_JSON [RESULT_JSON]`` writes the result JSON to RESULT_JSON and
prints it as the last stdout line after ``OVERLORD_RESULT ``; exit 0 succeeded, 1 failed.

The model is reached through ``relay``, the path of the worker's model relay socket
(``overlord.adapters.containers.relay``): the minion holds no API key and no endpoint URL. (``endpoint``, a
plain URL called without credentials, is for running the runtime by hand.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from overlord.minion_runtime.tools import MinionFailure, RepoTools, tool_schemas

RESULT_PREFIX = "OVERLORD_RESULT "
MAX_MALFORMED = 3  # malformed tool calls in a row that end the run
MAX_ANSWER = 8 * 1024 * 1024  # bytes of one answer from the relay
REQUIRED = ("repo", "branch", "instruction", "model")
DEFAULTS: dict[str, Any] = dict(
    base=None, task_type="feature", relay=None, endpoint=None, test_command=None, lint_command=None,
    max_turns=20, max_seconds=600, request_timeout=120, command_timeout=120,
)  # fmt: skip
SYSTEM_PROMPT = """You are an Overlord minion, a careful software engineer working alone in a git
repository. Task type: {task_type}. Use the tools to inspect and change files; paths are
relative to the repository root. Write complete file contents with write_file. Run the tests
and the linter when they are available. Do not commit: that is done for you. When finished,
answer without calling a tool and give a short summary of what you did (for a review or a
plan, the answer itself is the summary)."""


def make_result(branch: Any, started: float, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = dict(
        status="failed", reason=None, summary="", files_changed=[], commit=None, branch=branch,
        turns=0, tokens={"prompt": 0, "completion": 0},
    )  # fmt: skip
    result.update(fields, duration=round(time.monotonic() - started, 3))
    return result


def relay_post(socket_path: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.0 POST over the relay's unix socket (the relay answers and closes);
    (status, body). A few lines instead of http.client, which costs a container start
    tens of milliseconds to import."""
    head = (f"POST {path} HTTP/1.0\r\nHost: relay\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    chunks, total = [], 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(head.encode() + body)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_ANSWER:
                raise ConnectionError(f"answer larger than {MAX_ANSWER} bytes")
    status_line, _, rest = b"".join(chunks).partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
    return int(parts[1]), rest.partition(b"\r\n\r\n")[2]


class Minion(RepoTools):
    """One run: check out the branch, talk to the model, run its tool calls, commit."""

    def __init__(self, job: dict[str, Any]) -> None:
        missing = [k for k in REQUIRED if not job.get(k)]
        if not job.get("relay") and not job.get("endpoint"):
            missing.append("relay")
        if missing:
            raise MinionFailure(f"job is missing required field(s): {', '.join(missing)}")
        self.job = {**DEFAULTS, **{k: v for k, v in job.items() if v is not None}}
        self.root = Path(self.job["repo"]).resolve()
        self.branch: str = self.job["branch"]
        relay = self.job["relay"]
        self.where = "relay" if relay else str(self.job["endpoint"])
        self.started = time.monotonic()
        self.turns = 0
        self.tokens = {"prompt": 0, "completion": 0}
        self.original_ref: str | None = None
        self.created_branch = False

    def log(self, message: str) -> None:
        print(f"[minion] {message}", file=sys.stderr, flush=True)

    def remaining(self) -> float:
        return float(self.job["max_seconds"]) - (time.monotonic() - self.started)

    def execute(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run an argument list in the repository."""
        return subprocess.run(
            cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.execute(["git", "-c", f"safe.directory={self.root}", *args], 120)
        if check and proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            raise MinionFailure(f"git {args[0]} failed: {err[-1] if err else proc.returncode}")
        return proc

    def has_commit(self, ref: str) -> bool:
        proc = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return proc.returncode == 0

    def prepare(self) -> None:
        if not (self.root / ".git").exists():
            raise MinionFailure(f"{self.root} is not a git working copy")
        if self.git("status", "--porcelain").stdout.strip():
            raise MinionFailure(f"working tree {self.root} is dirty; commit or stash it first")
        sha, head = self.git("rev-parse", "HEAD", "--abbrev-ref", "HEAD").stdout.split()
        self.original_ref = sha if head == "HEAD" else head
        if head == self.branch:
            return
        if self.has_commit(f"refs/heads/{self.branch}"):
            self.git("checkout", "--quiet", self.branch)
            return
        base = self.job["base"] or "HEAD"
        if self.git("checkout", "--quiet", "-b", self.branch, base, check=False).returncode:
            if not self.has_commit(base):
                raise MinionFailure(f"base ref {base!r} not found in {self.root}")
            self.git("checkout", "--quiet", "-b", self.branch, base)  # says why it fails
        self.created_branch = True

    def commit(self) -> tuple[list[str], str | None]:
        self.git("add", "-A")
        changed = [f for f in self.git("diff", "--cached", "--name-only").stdout.splitlines() if f]
        if not changed:
            return [], None
        first = (str(self.job["instruction"]).strip().splitlines() or [""])[0][:72]
        ident: list[str] = []
        if not self.git("config", "user.email", check=False).stdout.strip():
            ident = ["-c", "user.name=Overlord Minion", "-c", "user.email=minion@overlord.invalid"]
        message = f"overlord: {self.job['task_type']}: {first}"
        self.git(*ident, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message)
        return changed, self.git("rev-parse", "HEAD").stdout.strip()

    def discard(self) -> None:
        """After a failure: drop uncommitted edits, return to the original ref, drop a new branch."""
        if self.original_ref is None:
            return
        self.git("reset", "--quiet", "--hard", "HEAD", check=False)
        self.git("clean", "-fdq", check=False)
        if self.original_ref != self.branch:
            self.git("checkout", "--quiet", self.original_ref, check=False)
            if self.created_branch:
                self.git("branch", "-D", self.branch, check=False)

    def chat(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        remaining = self.remaining()
        if remaining <= 0:
            raise MinionFailure(f"max_seconds ({self.job['max_seconds']}) exceeded")
        timeout = max(0.1, min(float(self.job["request_timeout"]), remaining))
        body = {"model": self.job["model"], "messages": messages, "tools": tool_schemas()}
        where = self.where
        try:
            status, raw = self.post(json.dumps(body).encode(), timeout)
        except (OSError, ValueError) as exc:
            if isinstance(exc, TimeoutError) or "timed out" in str(exc):
                raise MinionFailure(
                    f"model request to {where} timed out after {timeout:g}s"
                ) from None
            raise MinionFailure(f"cannot reach model endpoint {where}: {exc}") from None
        if status >= 400:
            detail = raw[:300].decode("utf-8", "replace").strip().replace("\n", " ")
            raise MinionFailure(f"model endpoint {where} returned HTTP {status}: {detail}")
        try:
            data = json.loads(raw)
            message = data["choices"][0]["message"]
            if not isinstance(message, dict):
                raise TypeError("message is not an object")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise MinionFailure(
                f"malformed response from model endpoint {where}: {exc!r}"
            ) from None
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.tokens["prompt"] += int(usage.get("prompt_tokens") or 0)
            self.tokens["completion"] += int(usage.get("completion_tokens") or 0)
        return message

    def post(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        """POST a chat request to the relay (or the endpoint); (status, body)."""
        if self.job["relay"]:
            return relay_post(self.job["relay"], "/v1/chat/completions", data, timeout)
        import http.client  # only when run by hand against a plain URL

        url = urllib.parse.urlsplit(str(self.job["endpoint"]))
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.request("POST", url.path.rstrip("/") + "/chat/completions", body=data,
                         headers={"Content-Type": "application/json"})  # fmt: skip
            resp = conn.getresponse()
            return resp.status, resp.read()
        except http.client.HTTPException as exc:
            raise ConnectionError(f"bad HTTP answer: {exc!r}") from None
        finally:
            conn.close()

    def loop(self) -> str:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT.format(task_type=self.job["task_type"])},
            {"role": "user", "content": str(self.job["instruction"])},
        ]
        malformed = 0
        max_turns = int(self.job["max_turns"])
        while self.turns < max_turns:
            self.turns += 1
            message = self.chat(messages)
            calls = message.get("tool_calls")
            if not calls:
                content = message.get("content")
                return content.strip() if isinstance(content, str) else ""
            if not isinstance(calls, list):
                raise MinionFailure("malformed response: tool_calls is not a list")
            reply = {"role": "assistant", "content": message.get("content"), "tool_calls": calls}
            messages.append(reply)
            for call in calls:
                call_id, output, bad = self.call_tool(call)
                malformed = malformed + 1 if bad else 0
                if bad:
                    self.log(f"turn {self.turns}: {output}")
                if malformed >= MAX_MALFORMED:
                    raise MinionFailure(f"{malformed} malformed tool calls in a row: {output}")
                messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        raise MinionFailure(f"max_turns ({max_turns}) reached without a final answer")

    def run(self) -> dict[str, Any]:
        try:
            self.prepare()
            summary = self.loop()
            files, sha = self.commit()
            fields: dict[str, Any] = dict(status="succeeded", summary=summary)
            fields.update(files_changed=files, commit=sha)
        except MinionFailure as exc:
            fields = dict(reason=str(exc))
            self.discard()
        except Exception as exc:  # the result must always be produced
            fields = dict(reason=f"internal error: {type(exc).__name__}: {exc}")
            self.discard()
        fields.update(turns=self.turns, tokens=self.tokens)
        return make_result(self.branch, self.started, **fields)


def watch_parent() -> None:
    """Stop when the worker that started us dies ($OVERLORD_PARENT_PID, set by the process
    backend): a SIGKILLed worker must not leave a minion calling the model on its own."""
    parent = os.environ.get("OVERLORD_PARENT_PID", "")
    if not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def write_result(path: str, text: str) -> None:
    """Write the result file, never through a link or into a FIFO someone put there (the
    OVERLORD_RESULT line on stdout is then the only copy)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        print(f"[minion] result file {path} not written: {exc}", file=sys.stderr, flush=True)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    watch_parent()
    if not args or len(args) > 2:
        print(
            "usage: python -m overlord.minion_runtime.agent JOB_JSON [RESULT_JSON]", file=sys.stderr
        )
        return 2
    started = time.monotonic()
    job: Any = None
    try:
        job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        if not isinstance(job, dict):
            raise MinionFailure("job file must contain a JSON object")
        result = Minion(job).run()
    except (OSError, ValueError, MinionFailure) as exc:
        branch = job.get("branch") if isinstance(job, dict) else None
        result = make_result(branch, started, reason=f"cannot start: {exc}")
    text = json.dumps(result)
    if len(args) == 2:
        write_result(args[1], text + "\n")
    print(RESULT_PREFIX + text, flush=True)
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
