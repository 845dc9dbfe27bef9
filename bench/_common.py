"""Shared bits of the dispatch benchmarks: an isolated scratch workspace, Redis, reporting."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.kit import isolate_git_env  # noqa: E402

PROTOCOL = "BENCH-RESULT "  # read by bench/run_all.py


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory with an isolated HOME and git config (os.environ patched)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(isolate_git_env(root / "home"))
    try:
        yield root
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def compile_package() -> None:
    """Write overlord's bytecode (``__pycache__``) before timing its start-up, as pip
    does when it installs a wheel: an editable checkout run with PYTHONDONTWRITEBYTECODE
    set (as here) would otherwise compile every module from source on every start, which
    an installed overlord never does (the tools it is compared with are installed)."""
    import compileall

    compileall.compile_dir(str(ROOT / "overlord"), quiet=1)


def redis_url(db: int) -> str:
    """The real Redis at 127.0.0.1:6379, database ``db``, flushed."""
    import redis

    url = f"redis://127.0.0.1:6379/{db}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.RedisError as exc:
        sys.exit(f"this benchmark needs Redis at 127.0.0.1:6379: {exc}")
    return url


def write_config(root: Path, body: dict[str, Any]) -> Path:
    import yaml

    path = root / "overlord.yml"
    body = {"state_url": f"sqlite:///{root}/state/overlord.db", **body}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(name: str, ours: float, baseline: float, baseline_name: str, target: float) -> None:
    """One protocol line: ratio = baseline / ours, passes when >= target."""
    doc = {
        "name": name,
        "ours": round(ours, 4),
        "baseline": round(baseline, 4),
        "baseline_name": baseline_name,
        "target": round(target, 4),
    }
    print(PROTOCOL + json.dumps(doc), flush=True)


def sleep_project(root: Path, name: str, seconds: float) -> tuple[Path, dict[str, Any]]:
    """A one-commit trunk repository ``root/repos/NAME`` whose test command sleeps
    ``seconds``: the repo and its project entry for the config."""
    repo = root / "repos" / name
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README.md").write_text(f"{name}\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "init"], check=True)
    return repo, {"path": str(repo), "branch_model": "trunk", "test_command": f"sleep {seconds:g}"}
