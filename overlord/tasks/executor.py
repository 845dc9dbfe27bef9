"""``CeleryExecutor``: the plan executor (``ports.Executor``) on Celery, embedded or
distributed (SPEC §5). It is the one place that turns a plan into task messages: the
canvas (``tasks.compiler``), the rollback task (``tasks.definitions``), the queues, the
workers asked over the broker (``tasks.runtime``), lost steps sent again
(``tasks.liveness``). The runner asks ``wiring.executor`` for it and names none of these.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from celery import Celery

from overlord import defaults
from overlord.core.config import Config
from overlord.core.plan import DispatchPlan
from overlord.tasks.runtime import Runtime, idle_queues

if TYPE_CHECKING:
    from overlord.ports import Executor


class CeleryExecutor:
    """A runtime (``tasks.runtime.Runtime``: the broker and, when wanted, a worker) that
    sends the plan's canvases."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime = Runtime(config)
        self.embedded = self.runtime.embedded

    def __enter__(self) -> CeleryExecutor:
        self.runtime.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.runtime.close()

    @property
    def app(self) -> Celery:
        assert self.runtime.app is not None, "the executor is not open"
        return self.runtime.app

    def idle_queues(self, queues: set[str]) -> list[str]:
        if self.runtime.with_worker or self.runtime.app is None:
            return []
        return idle_queues(self.app, queues | {defaults.DIRECT_QUEUE})

    def holders(self, plan_id: str) -> list[str]:
        if self.runtime.app is None:
            return []
        try:
            inspect = self.app.control.inspect(timeout=defaults.INSPECT_TIMEOUT)
            replies = [inspect.active() or {}, inspect.reserved() or {}]
        except Exception:
            return []  # no answer: nothing is known to hold the plan
        holders = set()
        for reply in replies:
            for worker, tasks in reply.items():
                for task in tasks:
                    args = list(task.get("args") or [])  # (plan id, step id) or (plan id,)
                    if args and args[0] == plan_id:
                        what = args[1] if len(args) > 1 else task.get("name")
                        holders.add(f"{worker} ({what})")
        return sorted(holders)

    def run_steps(self, plan: DispatchPlan) -> None:
        from overlord.tasks.compiler import compile_plan

        self.runtime.send(compile_plan(self.app, plan))

    def run_push(self, plan: DispatchPlan) -> None:
        from overlord.tasks.compiler import compile_push

        self.runtime.send(compile_push(self.app, plan))

    def run_rollback(self, plan_id: str) -> None:
        from overlord.tasks.definitions import rollback_signature

        self.runtime.send(rollback_signature(self.app, plan_id))

    def recover(self, plan_id: str) -> list[str]:
        if self.embedded:
            return []  # the steps run in this process: none is lost without it
        from overlord.tasks.liveness import recover

        return recover(self.app, self.config, plan_id)


if TYPE_CHECKING:  # mypy checks that it is an Executor
    _check: Executor = CeleryExecutor(Config())
