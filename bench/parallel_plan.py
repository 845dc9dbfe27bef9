"""Benchmark: "run tests across all projects" on 8 repos whose suites take ~1 s each.

Run from the repository root:  .venv/bin/python bench/parallel_plan.py [--repos 8] [--runs 3]

Each repo's ``test_command`` is ``sleep 1`` (a 1 s suite, no interpreter start-up noise);
``max_concurrent_steps`` is 5, so the critical path is ceil(8 / 5) × 1 s = 2 s.

- ours: ``overlord.runner.run`` of the plan in embedded mode (private redis-server, in-process
  worker), exactly as ``overlord dispatch`` runs it — runtime start-up and shut-down
  included; the plan's own span (first step start → last step end) is printed too;
- sequential: the same 8 steps one after another through ``overlord.steps.execute``
  (the code a worker runs), no Celery at all.

Target: ours <= 1.10 × the critical path (2 s); also reported against sequential.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from _common import median, report, scratch, sleep_project, write_config

LIMIT = 5
SUITE = 1.0


def build(root: Path, count: int) -> Path:
    projects = {}
    for i in range(count):
        projects[f"p{i}"] = sleep_project(root, f"p{i}", SUITE)[1]
    return write_config(
        root,
        {
            "projects": projects,
            "autonomy": {"global": "proactive"},
            "dispatch": {"max_concurrent_steps": LIMIT},
        },
    )


def plan(config_path: Path):  # type: ignore[no-untyped-def]
    from overlord.core import config as config_module
    from overlord.core import planner
    from overlord.core.parser import parse
    from overlord.core.registry import Registry

    config = config_module.load(config_path)
    return config, planner.plan_for(
        parse("run tests across all projects", Registry(config)), config
    )


def run_ours(config_path: Path) -> tuple[float, float]:
    from overlord import dispatching, runner
    from overlord.core.plan import PlanState

    config, p = plan(config_path)
    dispatching.submit(config, p, dispatching.prepare(config, p))
    start = time.perf_counter()
    done = runner.run(config, p.id)
    wall = time.perf_counter() - start
    assert done.state is PlanState.SUCCEEDED, (done.state, done.error)
    starts = [s.started_at for s in done.steps if s.started_at]
    ends = [s.ended_at for s in done.steps if s.ended_at]
    return wall, (max(ends) - min(starts)).total_seconds()


def run_sequential(config_path: Path) -> float:
    from overlord import runner, steps
    from overlord.core.plan import PlanState

    config, p = plan(config_path)
    p.state = PlanState.RUNNING
    runner.store_for(config).save(p)
    start = time.perf_counter()
    for step in p.steps:
        steps.execute(config, p.id, step.id, "sequential")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    critical = math.ceil(opts.repos / LIMIT) * SUITE
    with scratch("ovpar-") as root:
        config_path = build(root, opts.repos)
        walls, spans, seqs = [], [], []
        for _ in range(opts.runs):
            wall, span = run_ours(config_path)
            walls.append(wall)
            spans.append(span)
            seqs.append(run_sequential(config_path))
        w, sp, sq = median(walls), median(spans), median(seqs)
        print(
            f"run tests across {opts.repos} repos (suite {SUITE:g} s, limit {LIMIT}), {opts.runs} runs"
        )
        print(f"  critical path              {critical:6.2f} s")
        print(
            f"  overlord (runner.run)      {w:6.2f} s  = {w / critical:.2f}x critical path (target <= 1.10x)"
        )
        print(f"    plan span (steps only)   {sp:6.2f} s  = {sp / critical:.2f}x critical path")
        print(f"  sequential (steps.execute) {sq:6.2f} s  -> overlord {sq / w:.2f}x faster")
        report("parallel_plan vs critical path", w, critical, "critical path", 1 / 1.10)
        report("parallel_plan vs sequential", w, sq, "sequential steps", 1.0)


if __name__ == "__main__":
    main()
