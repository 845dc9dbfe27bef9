"""Concurrent writers on one plan (SPEC §4.3), on SQLite and the real PostgreSQL: many
steps finishing at once get distinct places in the completion order, and concurrent
changes of the plan document and of step routes are never lost."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from overlord.adapters.sql.store import Store
from overlord.core.plan import PlanState, StepState
from tests.integration.test_db import needs_pg, pg_database, sqlite_database
from tests.unit.test_hotpath import _running_plan

THREADS = 12


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[needs_pg, pytest.mark.postgres])]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    manager = pg_database() if request.param == "postgresql" else sqlite_database(tmp_path)
    with manager as found:
        yield found


def _at_once(work: Callable[[int], None], n: int = THREADS) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_many_concurrent_finishes_get_distinct_order(url: str) -> None:
    plan = _running_plan(url, steps=THREADS * 3)

    def finish(i: int) -> None:
        for sid in (f"s{i}", f"s{i + THREADS}", f"s{i + 2 * THREADS}"):
            assert Store(url).claim(plan.id, sid, f"w{i}") is not None
            Store(url).finish(plan.id, sid, StepState.SUCCEEDED, output="ok")

    _at_once(finish)
    steps = Store(url).load(plan.id).steps
    order = [s.finished_seq for s in steps]
    assert None not in order and len(set(order)) == len(steps) == THREADS * 3
    assert {s.state for s in steps} == {StepState.SUCCEEDED}
    # each worker's own steps are ordered as it finished them
    for i in range(THREADS):
        mine = [Store(url).load_step(plan.id, f"s{i + k * THREADS}").finished_seq for k in range(3)]
        assert mine == sorted(mine)  # type: ignore[type-var]


def test_concurrent_document_changes_are_all_kept(url: str) -> None:
    plan = _running_plan(url, steps=THREADS)

    def change(i: int) -> None:
        store = Store(url)
        store.update_doc(plan.id, add_notes=[f"note {i}"])
        store.set_route(plan.id, f"s{i}", f"endpoint-{i}", "test", tier="local")
        store.update_doc(plan.id, add_notes=[f"second note {i}"])

    _at_once(change)
    store = Store(url)
    assert store.transition(plan.id, PlanState.FAILING, expect=[PlanState.RUNNING], add_notes=["x"])
    loaded = store.load(plan.id)
    expected = {f"note {i}" for i in range(THREADS)} | {f"second note {i}" for i in range(THREADS)}
    assert set(loaded.notes) == expected | {"x"} and len(loaded.notes) == 2 * THREADS + 1
    assert loaded.notes[-1] == "x"
    for i in range(THREADS):
        step = loaded.step(f"s{i}")
        assert step.endpoint == f"endpoint-{i}" and step.tier is not None
