"""Benchmark: what Overlord adds on top of Celery for a 50-step plan of no-ops.

Run from the repository root:  .venv/bin/python bench/dispatch_overhead.py [--runs 7]

Shape: 5 independent chains of 10 ``noop`` steps (``max_concurrent_steps`` 5), so the plan
compiles to one chord of 5 chains plus ``overlord.finish`` — every step is on the critical
path of its chain, which is where per-step overhead shows.

- ours: ``DispatchPlan`` built directly → ``Store.save`` → running → ``compile_plan`` →
  ``apply_async`` → followed with ``runner.wait`` until it settles; every step runs the real
  task (claim, idempotency check, record, finish in the state DB). One runtime on the real
  Redis (db 11) with an in-process thread worker, started once (not timed).
- baseline: a hand-written canvas of the same shape, ``chord(group(5 × chain(10 × noop)),
  noop)``, on the same Redis with the same Celery app settings (``make_app``'s: JSON,
  acks_late, prefetch 1, task events for Flower) and an in-process thread worker of the
  same concurrency, waited for with ``.get()``.

Phases alternate (baseline, ours, baseline, ours) in one process; medians are compared.
Target: ours <= 1.3 × baseline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import median, redis_url, report, scratch, write_config

LINES, LENGTH, LIMIT = 5, 10, 5
DB = 11


def noop_plan(task: str):  # type: ignore[no-untyped-def]
    from overlord.core.config import ActionKind
    from overlord.core.plan import DispatchPlan, DispatchStep

    steps = []
    for line in range(LINES):
        prev = None
        for i in range(LENGTH):
            sid = f"l{line}s{i}"
            steps.append(
                DispatchStep(
                    id=sid, kind=ActionKind.NOOP, depends_on=[prev] if prev else [], estimate=0.01
                )
            )
            prev = sid
    plan = DispatchPlan(task=task, steps=steps)
    plan.validate_dag()
    plan.compute_scope([])
    return plan


def run_ours(config_path: Path, runs: int) -> list[float]:
    from overlord import runner
    from overlord.core import config as config_module
    from overlord.core.plan import PlanState
    from overlord.tasks.compiler import compile_plan
    from overlord.tasks.runtime import Runtime

    config = config_module.load(config_path)
    store = runner.store_for(config)
    times = []
    with Runtime(config, embedded=False, worker=True) as runtime:
        assert runtime.app is not None
        for i in range(runs + 1):
            plan = noop_plan(f"bench {i}")
            start = time.perf_counter()
            store.save(plan)
            store.transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED])
            compile_plan(runtime.app, store.load(plan.id)).apply_async()
            done = runner.wait(config, plan.id, timeout=120)
            elapsed = time.perf_counter() - start
            assert done.state is PlanState.SUCCEEDED, (done.state, done.error)
            if i:  # the first run warms up connections and imports
                times.append(elapsed)
    return times


def run_baseline(broker: str, runs: int) -> list[float]:
    from celery import chain, chord, group
    from celery.contrib.testing.worker import start_worker

    from overlord.tasks.app import make_app

    # the very settings Overlord's app uses (JSON, acks_late, prefetch 1, events ...), so
    # the difference is what Overlord does per plan and per step, not Celery tuning
    app = make_app(None, broker)

    @app.task(name="bench.noop", shared=False)
    def noop() -> str:
        return "ok"

    times = []
    with start_worker(
        app,
        pool="threads",
        concurrency=LIMIT + 2,
        loglevel="CRITICAL",
        perform_ping_check=False,
        queues=["bench-baseline"],
    ):
        for i in range(runs + 1):
            canvas = chord(
                group(
                    *(
                        chain(*(noop.si().set(queue="bench-baseline") for _ in range(LENGTH)))
                        for _ in range(LINES)
                    ),
                    app=app,
                ),
                noop.si().set(queue="bench-baseline"),
                app=app,
            )
            start = time.perf_counter()
            canvas.apply_async().get(timeout=120, disable_sync_subtasks=False)
            elapsed = time.perf_counter() - start
            if i:
                times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per phase")
    opts = parser.parse_args()
    with scratch("ovbench-") as root:
        broker = redis_url(DB)
        config_path = write_config(
            root, {"broker_url": broker, "dispatch": {"max_concurrent_steps": LIMIT}}
        )
        baseline, ours = [], []
        for _ in range(2):
            baseline += run_baseline(broker, opts.runs)
            ours += run_ours(config_path, opts.runs)
        b, o = median(baseline), median(ours)
        steps = LINES * LENGTH
        print(f"{steps} no-op steps as {LINES} chains of {LENGTH}, {len(ours)} runs each")
        print(
            f"  celery canvas (baseline)  median {b * 1000:7.1f} ms  min {min(baseline) * 1000:7.1f} ms"
        )
        print(
            f"  overlord plan             median {o * 1000:7.1f} ms  min {min(ours) * 1000:7.1f} ms"
        )
        print(
            f"  ratio ours/baseline {o / b:.2f}x (target <= 1.30x); "
            f"overhead {(o - b) / steps * 1000:.1f} ms per step"
        )
        report("dispatch_overhead", o, b, "hand-written celery canvas", 1 / 1.3)


if __name__ == "__main__":
    main()
