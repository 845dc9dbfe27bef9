"""Benchmark: ``overlord --help`` vs ``gita --help``, whole processes.

Run from the repository root:  .venv/bin/python bench/startup.py [--runs 5]

Both are the console scripts installed in this interpreter's environment (gita is
installed with pip when missing), run interleaved after one warm-up each; medians are
compared. Overlord's bytecode is written first (``_common.compile_package``), as an
installed package has it. Target: ours <= 1.5 x gita.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import compile_package, report


def ensure_gita() -> Path:
    exe = Path(sys.executable).with_name("gita")
    if not exe.exists():
        print("installing gita into", sys.prefix, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "gita"], check=True)
    return exe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    commands = {
        "overlord --help": [str(Path(sys.executable).with_name("overlord")), "--help"],
        "gita --help": [str(ensure_gita()), "--help"],
    }
    times: dict[str, list[float]] = {label: [] for label in commands}
    compile_package()
    for argv in commands.values():
        subprocess.run(argv, capture_output=True, check=True)  # warm-up
    for _ in range(opts.runs):
        for label, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times[label].append(time.perf_counter() - start)
    med = {label: statistics.median(values) for label, values in times.items()}
    for label, values in times.items():
        print(f"{label:16} median {med[label]:.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
    ours, gita = med["overlord --help"], med["gita --help"]
    print(f"ours / gita = {ours / gita:.2f}x (target <= 1.5x)")
    report("overlord --help vs gita --help", ours, gita, "gita --help", 1 / 1.5)


if __name__ == "__main__":
    main()
