"""Benchmark: ``overlord status --json`` on 50 repos vs a sequential git loop vs ``gita ll``.

Run from the repository root:  .venv/bin/python bench/status_scan.py [--repos 50] [--runs 3]

Everything happens in a temporary directory with an isolated HOME and git config: 50 repos
(a few commits, a tag, an old merged branch, an unmerged one), each with a bare remote it
tracks; some repos are made dirty, ahead or behind. gita is installed into the running
interpreter's environment with pip when missing.
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


def timed(label: str, fn: Callable[[], None], runs: int) -> dict[str, float | str]:
    fn()  # warm-up (page cache, pyc files)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"label": label, "best": min(times), "median": statistics.median(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = parser.parse_args()

    gita = ensure_gita()
    tmp = Path(tempfile.mkdtemp(prefix="overlord-bench-"))
    try:
        env = isolate_git_env(tmp / "home")
        env["XDG_CONFIG_HOME"] = str(tmp / "home" / ".config")
        env["PYTHONPATH"] = str(ROOT)
        started = time.perf_counter()
        repos = build(tmp, opts.repos, env)
        config = write_config(tmp, repos)
        print(f"built {len(repos)} repos in {time.perf_counter() - started:.1f}s under {tmp}")
        subprocess.run(
            [str(gita), "add", *map(str, repos)], env=env, check=True, capture_output=True
        )

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
            proc = subprocess.run([str(gita), "ll"], env=env, capture_output=True, text=True)
            assert proc.returncode == 0 and proc.stdout.count("\n") >= len(repos), proc.stderr

        results = [
            timed("overlord status --json", ours, opts.runs),
            timed("sequential git status + rev-list", sequential, opts.runs),
            timed("gita ll", gita_ll, opts.runs),
        ]
        ours_best = float(results[0]["best"])
        print(
            f"\n{opts.repos} repos, best/median of {opts.runs} runs (after one warm-up), {os.cpu_count()} CPUs"
        )
        print(f"{'command':36} {'best s':>8} {'median s':>9} {'vs ours':>8}")
        for row in results:
            best = float(row["best"])
            print(
                f"{row['label']:36} {best:8.3f} {float(row['median']):9.3f} {best / ours_best:7.2f}x"
            )
        print(
            f"\nours vs sequential: {float(results[1]['best']) / ours_best:.2f}x faster; "
            f"ours vs gita: {float(results[2]['best']) / ours_best:.2f}x faster"
        )
    finally:
        if opts.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
