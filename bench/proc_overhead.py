"""Benchmark: what ``overlord.adapters.commands.proc.run`` adds to each command (every run-tests step).

Run from the repository root:  .venv/bin/python bench/proc_overhead.py [--runs 20] [--rounds 5]

``--runs`` runs of ``true`` through ``proc.run`` (own session under the worker's guard,
bounded output tail, group stopped) against as many ``subprocess.run(["true"])``,
interleaved in ``--rounds`` rounds; the medians of the per-command times are compared.
The guard process is started once, before timing (a worker starts it on its first
command). Target: ours at most ``MARGIN_MS`` slower per command than the bare subprocess
(target = baseline / (baseline + margin)).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from _common import report

from overlord.adapters.commands import proc

MARGIN_MS = 5.0


def per_command(runs: int, call: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        call()
    return (time.perf_counter() - start) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overlord-bench-proc-") as here:
        ours_calls = lambda: proc.run(["true"], cwd=here, timeout=30)  # noqa: E731
        bare_calls = lambda: subprocess.run(["true"], cwd=here, check=True)  # noqa: E731
        ours_calls()  # starts the guard
        ours, bare = [], []
        for _ in range(opts.rounds):
            ours.append(per_command(opts.runs, ours_calls))
            bare.append(per_command(opts.runs, bare_calls))
    mine, base = statistics.median(ours), statistics.median(bare)
    print(
        f"per command: proc.run {mine * 1000:.2f} ms, subprocess.run {base * 1000:.2f} ms, "
        f"overhead {(mine - base) * 1000:.2f} ms (target <= {MARGIN_MS:g} ms)"
    )
    report(
        "proc.run(true) vs subprocess.run(true), per command",
        mine,
        base,
        "subprocess.run",
        base / (base + MARGIN_MS / 1000),
    )


if __name__ == "__main__":
    main()
