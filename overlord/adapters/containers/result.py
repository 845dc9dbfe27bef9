"""What a minion run produced, read back without trusting the sandbox.

Files the sandbox could have written are opened with ``O_NOFOLLOW | O_NONBLOCK`` one path
component at a time from a directory the sandbox cannot replace, accepted only as regular
files, and read up to a cap: a planted symlink, FIFO or device never blocks the worker or
leads it outside the sandbox's directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from overlord import defaults

RESULT_PREFIX = "OVERLORD_RESULT "


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
    relay_calls: list[str] = Field(default_factory=list)  # the relay's log of model calls

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class NotRegular(OSError):
    """The path is a link, a FIFO, a device or a directory: not read."""


def read_untrusted(root: Path, relative: str, limit: int = defaults.MINION_RESULT_MAX) -> bytes:
    """Read ``root/relative`` without following any link below ``root`` (``root`` itself
    is ours). Raises OSError when it is missing, not a regular file, or over ``limit``."""
    parts = [p for p in relative.split("/") if p]
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(f"{relative} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise NotRegular(f"{relative} is larger than {limit} bytes")
    return data


def read_result(root: Path, relative: str, run: Run, branch: str) -> MinionResult:
    """The minion's result: its result file, else its OVERLORD_RESULT line, else a failure."""
    code, out, err, timed_out = run
    logs = "".join(ln for ln in err.splitlines(keepends=True) if not ln.startswith(RESULT_PREFIX))
    tail = logs[-defaults.OUTPUT_TAIL :]
    if timed_out:
        return MinionResult(branch=branch, reason=f"timed out after {timed_out:g}s", logs_tail=tail)
    data: Any = None
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(read_untrusted(root, relative))
    if not isinstance(data, dict):
        lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
        with contextlib.suppress(ValueError, IndexError):
            data = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    if not isinstance(data, dict):
        last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "no output")
        reason = f"minion exited with code {code} without a result: {last.strip()[:300]}"
        return MinionResult(branch=branch, reason=reason, logs_tail=tail)
    try:
        return MinionResult.model_validate({**data, "logs_tail": tail, "relay_calls": []})
    except ValueError as exc:
        return MinionResult(branch=branch, reason=f"malformed minion result: {exc}", logs_tail=tail)


def redacted(result: MinionResult, secrets: Any) -> MinionResult:
    text = result.model_dump_json()
    for value in secrets:
        if value:
            text = text.replace(json.dumps(value)[1:-1], "***")
    return MinionResult.model_validate_json(text)
