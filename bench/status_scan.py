"""Benchmark: ``overlord status --json`` vs ``gita ll`` (and a sequential git loop), at 50
and 500 repos.

Run from the repository root:  .venv/bin/python bench/status_scan.py [--repos 50,500] [--runs 5]

Everything happens in a temporary directory with an isolated HOME and git config: N repos
(a few commits, a tag, an old merged branch, an unmerged one), each with a bare remote it
tracks; some repos are made dirty, ahead or behind. gita is installed into the running
interpreter's environment with pip when missing. The commands run interleaved (ours,
gita, the loop; again ...) after one warm-up each, and the medians are compared;
overlord's bytecode is written first, as an installed package has it (gita's is). Targets:
ours <= 0.6 x gita at 50 repos, <= 0.4 x at 500; the plain loop (two git commands a repo,
learning far less) is a floor, not a peer: ours may take at most 4 x its time. "ours" is
the usual run: the file unchanged since a status validated it (``core.status_config``);
"ours, file just edited" (a comment changed before each run, so it is validated) is
printed too, with no target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import compile_package  # noqa: E402

from tests.kit import days_ago, isolate_git_env  # noqa: E402


def _git(repo: Path, *args: str, env: Mapping[str, str], date: str | None = None) -> str:
    full = dict(env)
    if date:
        full.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=full, check=True
    )
    return proc.stdout.strip()


def build(root: Path, count: int, env: Mapping[str, str]) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    repos: list[Path] = []
    for i in range(count):
        repo, bare = root / "repos" / f"repo{i:02d}", root / "remotes" / f"repo{i:02d}.git"
        _git(root, "init", "-q", "-b", "main", str(repo), env=env)
        _git(root, "init", "-q", "--bare", "-b", "main", str(bare), env=env)
        for n in range(3):
            (repo / f"file{n}.txt").write_text(f"{i} {n}\n")
            _git(repo, "add", "-A", env=env)
            _git(repo, "commit", "-q", "-m", f"Commit {n}", env=env, date=days_ago(100 - n * 30))
        _git(repo, "tag", "-a", "v0.1.0", "-m", "Release 0.1.0", env=env)
        _git(repo, "branch", "feature/old-merged", "HEAD~1", env=env)
        _git(repo, "branch", "feature/other", "HEAD~2", env=env)
        _git(repo, "remote", "add", "origin", str(bare), env=env)
        _git(repo, "push", "-q", "-u", "origin", "main", "--follow-tags", env=env)
        if i % 5 == 0:
            (repo / "file0.txt").write_text("dirty\n")
        if i % 7 == 0:
            (repo / "local.txt").write_text("local\n")
            _git(repo, "add", "-A", env=env)
            _git(repo, "commit", "-q", "-m", "Local work", env=env)
        repos.append(repo)
    return repos


def write_config(root: Path, repos: list[Path]) -> Path:
    lines = [f"state_url: sqlite:///{root / 'state.db'}", "projects:"]
    for repo in repos:
        lines += [
            f"  {repo.name}:",
            f"    path: {json.dumps(str(repo))}",
            "    branch_model: trunk",
        ]
    path = root / "overlord.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ensure_gita() -> Path:
    exe = Path(sys.executable).with_name("gita")
    if not exe.exists():
        print("installing gita into", sys.prefix, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "gita"], check=True)
    return exe


def interleaved(commands: dict[str, Callable[[], None]], runs: int) -> dict[str, list[float]]:
    """Each command once to warm up (page cache, pyc files), then ``runs`` rounds in turn."""
    for fn in commands.values():
        fn()
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, fn in commands.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return times


#: Target ratio (gita's median / ours) by repo count; the loop's is 0.25 everywhere.
GITA_TARGETS = {50: 1 / 0.6, 500: 1 / 0.4}
OURS, LOOP, GITA = "overlord status --json", "sequential git status + rev-list", "gita ll"
EDITED = "ours, file just edited"


def measure(tmp: Path, count: int, runs: int, gita: Path, env: dict[str, str]) -> None:
    """Build ``count`` repos under ``tmp`` and print the table and the protocol rows."""
    started = time.perf_counter()
    repos = build(tmp, count, env)
    config = write_config(tmp, repos)
    print(f"built {len(repos)} repos in {time.perf_counter() - started:.1f}s under {tmp}")
    gita_env = {**env, "XDG_CONFIG_HOME": str(tmp / "gita-config")}
    subprocess.run([str(gita), "add", *map(str, repos)], env=gita_env, check=True, capture_output=True)  # fmt: skip

    edits = iter(range(10**6))
    text = config.read_text()

    def edited() -> None:
        config.write_text(f"{text}# edit {next(edits)}\n")
        ours()

    def ours() -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "overlord", "status", "--json", "--config", str(config)],
            env=env, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert len(doc["projects"]) == len(repos) and all(p["ok"] for p in doc["projects"])

    def sequential() -> None:
        for repo in repos:
            for args in (
                ["status", "--porcelain"],
                ["rev-list", "--left-right", "--count", "HEAD...@{upstream}"],
            ):
                subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, check=True)  # fmt: skip

    def gita_ll() -> None:
        proc = subprocess.run([str(gita), "ll"], env=gita_env, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.count("\n") >= len(repos), proc.stderr

    times = interleaved({EDITED: edited, OURS: ours, GITA: gita_ll, LOOP: sequential}, runs)
    med = {label: statistics.median(values) for label, values in times.items()}
    print(
        f"\n{count} repos, median of {runs} interleaved runs (after one warm-up), {os.cpu_count()} CPUs"
    )
    print(f"{'command':36} {'best s':>8} {'median s':>9} {'ours / it':>10}")
    for label, values in times.items():
        print(f"{label:36} {min(values):8.3f} {med[label]:9.3f} {med[OURS] / med[label]:9.2f}x")
    report(f"status {count} repos: ours vs gita ll", med[OURS], med[GITA], "gita ll", GITA_TARGETS.get(count, 1.0))  # fmt: skip
    report(f"status {count} repos: ours vs git loop", med[OURS], med[LOOP], "sequential git loop", 0.25)  # fmt: skip


def report(name: str, ours: float, baseline: float, baseline_name: str, target: float) -> None:
    doc = {"name": name, "ours": round(ours, 4), "baseline": round(baseline, 4),
           "baseline_name": baseline_name, "target": round(target, 4)}  # fmt: skip
    print("BENCH-RESULT " + json.dumps(doc), flush=True)  # read by bench/run_all.py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", default="50,500", help="repo counts, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = parser.parse_args()

    gita = ensure_gita()
    compile_package()
    tmp = Path(tempfile.mkdtemp(prefix="overlord-bench-"))
    try:
        env = isolate_git_env(tmp / "home")
        env["XDG_CONFIG_HOME"] = str(tmp / "home" / ".config")
        env["PYTHONPATH"] = str(ROOT)
        for count in (int(n) for n in opts.repos.split(",")):
            measure(tmp / f"n{count}", count, opts.runs, gita, env)
    finally:
        if opts.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
