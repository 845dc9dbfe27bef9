"""Minion runtime: a tool-calling agent that edits one git repository (stdlib and git only).

``python -m overlord.minion_runtime.agent JOB_JSON [RESULT_JSON]`` writes the result JSON to RESULT_JSON and
prints it as the last stdout line after ``OVERLORD_RESULT ``; exit 0 succeeded, 1 failed.

The model is reached through ``relay``, the path of the worker's model relay socket
(``overlord.adapters.containers.relay``): the minion holds no API key and no endpoint URL. (``endpoint``, a
plain URL called without credentials, is for running the runtime by hand.)
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

RESULT_PREFIX = "OVERLORD_RESULT "
MAX_OUTPUT, MAX_READ, MAX_LIST, MAX_HITS, MAX_MALFORMED = 12_000, 100_000, 1_000, 200, 3
MAX_ANSWER = 8 * 1024 * 1024  # bytes of one answer from the relay
REQUIRED = ("repo", "branch", "instruction", "model")
DEFAULTS: dict[str, Any] = dict(
    base=None, task_type="feature", relay=None, endpoint=None, test_command=None, lint_command=None,
    max_turns=20, max_seconds=600, request_timeout=120, command_timeout=120,
)  # fmt: skip
# tool name -> (parameters, a trailing "?" marking an optional one; description)
TOOLS: dict[str, tuple[tuple[str, ...], str]] = {
    "list_files": (("path?",), "List files (recursively) under a directory of the repository."),
    "read_file": (("path",), "Read a text file of the repository."),
    "write_file": (("path", "content"), "Create or overwrite a text file with its full content."),
    "search": (("pattern", "path?"), "Search text files for a regex (or plain substring)."),
    "run_tests": ((), "Run the project's test command; returns its exit code and output."),
    "run_lint": ((), "Run the project's lint command; returns its exit code and output."),
    "git_diff": ((), "Show the changes made so far (git status and diff)."),
}
PARAM_DOCS = {
    "path": "path relative to the repository root (default '.')",
    "content": "the complete new file content",
    "pattern": "regular expression or plain substring",
}
SYSTEM_PROMPT = """You are an Overlord minion, a careful software engineer working alone in a git
repository. Task type: {task_type}. Use the tools to inspect and change files; paths are
relative to the repository root. Write complete file contents with write_file. Run the tests
and the linter when they are available. Do not commit: that is done for you. When finished,
answer without calling a tool and give a short summary of what you did (for a review or a
plan, the answer itself is the summary)."""


class MinionFailure(Exception):
    """A reason to stop the run with status failed."""


def tool_schemas() -> list[dict[str, Any]]:
    def schema(params: tuple[str, ...]) -> dict[str, Any]:
        props = {p.rstrip("?"): {"type": "string", "description": PARAM_DOCS[p.rstrip("?")]}
                 for p in params}  # fmt: skip
        required = [p for p in params if not p.endswith("?")]
        return {"type": "object", "properties": props, "required": required}

    return [
        {"type": "function", "function": {"name": n, "description": d, "parameters": schema(ps)}}
        for n, (ps, d) in TOOLS.items()
    ]


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


class Minion:
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

    def resolve(self, path: Any) -> Path:
        if not isinstance(path, str) or not path.strip():
            raise ValueError("path must be a non-empty string")
        target = Path(path)
        full = (target if target.is_absolute() else self.root / target).resolve()
        if full != self.root and self.root not in full.parents:
            raise ValueError(f"path {path!r} is outside the repository; use a relative path")
        if full.relative_to(self.root).parts[:1] == (".git",):
            raise ValueError("the .git directory is off limits")
        return full

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def walk(self, start: Path) -> list[Path]:
        if start.is_file():
            return [start]
        files: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            files.extend(Path(dirpath) / f for f in sorted(filenames))
        return files

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

    def run_command(self, kind: str) -> str:
        cmd = self.job[f"{kind}_command"]
        if not cmd:
            return f"no {kind} command is configured for this project"
        if not isinstance(cmd, list) or not all(isinstance(c, str) for c in cmd):
            return f"the {kind} command is not a list of strings; cannot run it"
        timeout = max(1.0, min(float(self.job["command_timeout"]), self.remaining()))
        try:
            proc = self.execute(cmd, timeout)
        except subprocess.TimeoutExpired:
            return f"{kind} command timed out after {timeout:g}s"
        except OSError as exc:
            return f"{kind} command could not start: {exc}"
        return f"exit code {proc.returncode}\n{(proc.stdout + proc.stderr)[-MAX_OUTPUT:]}"

    def tool_list_files(self, path: str = ".") -> str:
        files = [self.rel(f) for f in self.walk(self.resolve(path))]
        more = f"\n... and {len(files) - MAX_LIST} more" if len(files) > MAX_LIST else ""
        return "\n".join(files[:MAX_LIST]) + more if files else f"no files under {path}"

    def tool_read_file(self, path: str) -> str:
        target = self.resolve(path)
        if not target.is_file():
            return f"error: {path} is not a file"
        text = target.read_text(encoding="utf-8", errors="replace")
        return text if len(text) <= MAX_READ else text[:MAX_READ] + "\n... [truncated]"

    def tool_write_file(self, path: str, content: str) -> str:
        if not isinstance(content, str):
            raise ValueError("content must be a string")
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {len(content)} characters to {self.rel(target)}"

    def tool_search(self, pattern: str, path: str = ".") -> str:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("pattern must be a non-empty string")
        try:
            regex = re.compile(pattern)
        except re.error:
            regex = re.compile(re.escape(pattern))
        hits: list[str] = []
        for file in self.walk(self.resolve(path)):
            data = file.read_bytes()
            if b"\0" in data[:8192]:
                continue  # binary
            for no, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{self.rel(file)}:{no}: {line[:300]}")
                    if len(hits) >= MAX_HITS:
                        return "\n".join(hits) + "\n... [more matches omitted]"
        return "\n".join(hits) or "no matches"

    tool_run_tests = functools.partialmethod(run_command, "test")
    tool_run_lint = functools.partialmethod(run_command, "lint")

    def tool_git_diff(self) -> str:
        status = self.git("status", "--short", "--untracked-files=all").stdout
        diff = self.git("diff", "HEAD").stdout
        return (status + "\n" + diff)[:MAX_OUTPUT] if status else "no changes"

    def call_tool(self, call: Any) -> tuple[str, str, bool]:
        """Run one tool call; return (call id, tool output, malformed?)."""
        call_id = str(call.get("id", "")) if isinstance(call, dict) else ""
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return call_id, "error: malformed tool call (no function name)", True
        name = fn["name"]
        if name not in TOOLS:
            return call_id, f"error: unknown tool {name!r}; tools: {', '.join(TOOLS)}", True
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return call_id, f"error: arguments of {name} are not valid JSON", True
        if not isinstance(args, dict):
            return call_id, f"error: arguments of {name} must be a JSON object", True
        params = TOOLS[name][0]
        unknown = set(args) - {p.rstrip("?") for p in params}
        missing = [p for p in params if not p.endswith("?") and p not in args]
        if unknown or missing:
            what = f"missing {missing}" if missing else f"unexpected {sorted(unknown)}"
            return call_id, f"error: bad arguments for {name}: {what}", True
        shown = ", ".join(f"{k}={str(v)[:60]!r}" for k, v in args.items() if k != "content")
        self.log(f"turn {self.turns}: {name}({shown})")
        try:
            return call_id, getattr(self, f"tool_{name}")(**args), False
        except (ValueError, OSError, UnicodeError, MinionFailure) as exc:
            return call_id, f"error: {exc}", False

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
