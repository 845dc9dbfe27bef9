"""The minion's tools: what the model may call, each confined to the repository.

Part of the sandbox runtime (standard library and git only, like ``agent``): the schemas
sent to the model, and ``RepoTools``, the mix-in of ``agent.Minion`` that checks a call's
name and arguments and runs it. A path is resolved inside the repository and never into
``.git``; outputs are capped.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

MAX_OUTPUT, MAX_READ, MAX_LIST, MAX_HITS = 12_000, 100_000, 1_000, 200
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


class RepoTools:
    """The tools, run for ``agent.Minion`` (which provides what is declared here)."""

    root: Path
    job: dict[str, Any]
    turns: int

    def log(self, message: str) -> None:
        raise NotImplementedError

    def remaining(self) -> float:
        raise NotImplementedError

    def execute(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

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
