"""Run every benchmark in bench/ and print one table of ratios.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME] [--json]

Each benchmark is a script ``bench/NAME.py`` run with this interpreter. It reports results
as lines ``BENCH-RESULT {"name": ..., "ours": s, "baseline": s, "baseline_name": ...,
"target": ratio}`` on stdout (the protocol; ratio = baseline / ours, so 2.0 means ours
takes half the time, and a row passes when ratio >= target). The table prints every row
with its target, also as "ours may take at most N x the baseline" (1 / target). The exit
code is 1 when any row fails or a benchmark crashed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PROTOCOL = "BENCH-RESULT "


@dataclass
class Row:
    name: str
    ours: float | None
    baseline: float | None
    baseline_name: str
    target: float
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.ours or self.baseline is None:
            return None
        return self.baseline / self.ours

    @property
    def passed(self) -> bool:
        return self.ratio is not None and self.ratio >= self.target


def protocol_rows(stdout: str) -> list[Row]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith(PROTOCOL):
            doc = json.loads(line[len(PROTOCOL) :])
            rows.append(
                Row(
                    name=str(doc["name"]),
                    ours=float(doc["ours"]),
                    baseline=float(doc["baseline"]),
                    baseline_name=str(doc.get("baseline_name", "baseline")),
                    target=float(doc.get("target", 1.0)),
                )
            )
    return rows


ADAPTERS: dict[str, Callable[[str], list[Row]]] = {}
#: Arguments for a faster run (--quick).
QUICK_ARGS: dict[str, list[str]] = {
    "status_scan": ["--repos", "50", "--runs", "2"],
    "uneven_plan": ["--runs", "1"],
    "release": ["--runs", "1"],
    "parallel_plan": ["--runs", "1"],
}


def benchmarks(only: list[str] | None) -> list[Path]:
    scripts = sorted(
        p
        for p in BENCH.glob("*.py")
        if p.name != Path(__file__).name and not p.name.startswith("_")
    )
    if only:
        scripts = [p for p in scripts if p.stem in only]
    return scripts


def run_one(script: Path, quick: bool, timeout: float) -> list[Row]:
    args = QUICK_ARGS.get(script.stem, []) if quick else []
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return [Row(script.stem, None, None, "-", 1.0, f"timed out after {timeout:g}s")]
    sys.stderr.write(f"[run_all] {script.name}: {time.perf_counter() - started:.1f}s\n")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return [Row(script.stem, None, None, "-", 1.0, f"exit {proc.returncode}: {tail[0]}")]
    rows = protocol_rows(proc.stdout) or ADAPTERS.get(script.stem, lambda _: [])(proc.stdout)
    return rows or [Row(script.stem, None, None, "-", 1.0, "no results printed")]


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def table(rows: list[Row]) -> str:
    header = ("benchmark", "ours s", "baseline s", "ratio", "target", "ours/base", "result")
    body = [
        (
            r.name,
            _num(r.ours),
            _num(r.baseline),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            f">={r.target:.2f}x",
            "-" if r.ratio is None else f"{1 / r.ratio:.2f} <= {1 / r.target:.2f}",
            "pass" if r.passed else f"FAIL{' (' + r.note + ')' if r.note else ''}",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer runs")
    parser.add_argument("--only", action="append", help="run only this benchmark (repeat)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    opts = parser.parse_args(argv)
    scripts = benchmarks(opts.only)
    if not scripts:
        print("no benchmarks found", file=sys.stderr)
        return 2
    rows = [row for script in scripts for row in run_one(script, opts.quick, opts.timeout)]
    if opts.json:
        print(
            json.dumps(
                [{**asdict(r), "ratio": r.ratio, "passed": r.passed} for r in rows], indent=2
            )
        )
    else:
        print(table(rows))
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
