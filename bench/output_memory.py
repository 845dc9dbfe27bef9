"""Benchmark: memory of ``overlord dispatch`` when a test command prints 200 MB.

Run from the repository root:  .venv/bin/python bench/output_memory.py [--megabytes 200]

One project whose test command prints ``--megabytes`` MB (ours) or nothing (baseline);
``overlord dispatch "run tests in p" --yes`` runs in a fresh process in embedded mode
(the in-process worker reads the command's output) and reports its own peak RSS
(``ru_maxrss``). Commands' output is read into a bounded tail (``overlord.adapters.commands.proc``), so the
two peaks should differ by little. Target: ours within 20 MB of the baseline (the
reported "seconds" columns are MB here; target = baseline / (baseline + 20)).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _common import ROOT, report, scratch, write_config

MARGIN_MB = 20.0

_PRINT = (
    "import sys\nline = b'x' * 1023 + b'\\n'\nfor _ in range({n}): sys.stdout.buffer.write(line)\n"
)
_MEASURE = (
    "import resource, sys\n"
    "from overlord.cli.app import main\n"
    "code = main(['--config', sys.argv[1], 'dispatch', 'run tests in p', '--yes'])\n"
    "print('PEAK-KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)\n"
)


def peak_mb(root: Path, megabytes: int) -> float:
    repo = root / "p"
    repo.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "start"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    script = root / "print.py"
    script.write_text(_PRINT.format(n=megabytes * 1024))
    config = write_config(
        root,
        {
            "projects": {"p": {"path": str(repo), "test_command": f"{sys.executable} {script}"}},
            "autonomy": {"global": "proactive"},
        },
    )
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PEAK-KB")]
    if not lines or not lines[-1].endswith(" 0"):
        sys.exit(f"dispatch failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return int(lines[-1].split()[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    opts = parser.parse_args()
    with scratch("overlord-bench-mem-") as root:
        quiet = min(peak_mb(root / f"quiet{i}", 0) for i in range(opts.runs))
        loud = max(peak_mb(root / f"loud{i}", opts.megabytes) for i in range(opts.runs))
    print(f"peak RSS: silent test {quiet:.1f} MB, {opts.megabytes} MB of output {loud:.1f} MB")
    report(
        f"dispatch peak RSS MB: test printing {opts.megabytes} MB vs silent",
        loud,
        quiet,
        "silent test",
        quiet / (quiet + MARGIN_MB),
    )


if __name__ == "__main__":
    main()
