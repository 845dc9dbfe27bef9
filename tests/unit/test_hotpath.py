"""The per-step writes on SQLite through the DB-API (overlord.adapters.sql.hotpath) store exactly what
SQLAlchemy stores, take turns across threads, and reopen after ``db.dispose``."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from overlord import defaults
from overlord.adapters.sql import db, hotpath, store_statements
from overlord.adapters.sql.store import Store
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState

AT = datetime(2026, 11, 25, 18, 0, 0, 123456, tzinfo=UTC)


def _plan(steps: int = 2) -> DispatchPlan:
    return DispatchPlan(
        task="no-ops",
        steps=[DispatchStep(id=f"s{i}", kind=ActionKind.NOOP) for i in range(steps)],
        state=PlanState.QUEUED,
    )


def _running_plan(url: str, steps: int = 2) -> DispatchPlan:
    plan = _plan(steps)
    Store(url).save(plan)
    Store(url).transition(plan.id, PlanState.RUNNING, expect=[PlanState.QUEUED])
    return plan


def _stored(url: str) -> list[list[tuple[Any, ...]]]:
    """The raw rows (as SQLite holds them) of the steps and of the script's events."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        steps = conn.execute("SELECT * FROM steps ORDER BY step_id").fetchall()
        events = conn.execute("SELECT * FROM events WHERE kind = 'step' ORDER BY id").fetchall()
    return [steps, [row[1:] for row in events]]


def _script(run: Any, plan_id: str) -> list[list[dict[str, Any]]]:
    """The per-step statements of a claim and both kinds of finish, with fixed values."""
    ids = {"pid": plan_id, "sid": "s0"}
    done = {"state": "succeeded", "ended_at": AT, "output": "ok", "error": None}
    failed = {"state": "failed", "ended_at": AT, "output": "", "error": "boom"}
    event = {"pid": plan_id, "sid": "s0", "at": AT, "kind": "step", "message": "-> succeeded"}
    return [
        run(store_statements.CLAIM, {**ids, "now": AT, "worker": "w"}),
        run(store_statements.FINISH_SUCCEEDED, {**ids, **done, "undo": {"after": "abc"}}),
        run(store_statements.EVENT, event),
        run(store_statements.CLAIM, {"pid": plan_id, "sid": "s1", "now": AT, "worker": "w"}),
        run(store_statements.UPDATE_STEP, {"pid": plan_id, "sid": "s1", **failed}),
        run(store_statements.PLAN_STATE, ids),
        run(store_statements.STEP_ROW, ids),
    ]


def test_direct_statements_store_and_read_what_sqlalchemy_does(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("direct", "sqlalchemy")]
    plans = [_running_plan(url) for url in urls]
    # the same plan id in both databases, so every stored value can be compared
    for url, plan in zip(urls, plans, strict=True):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("PRAGMA foreign_keys = OFF")
            for table in ("steps", "plans"):
                column = "plan_id" if table == "steps" else "id"
                conn.execute(f"UPDATE {table} SET {column} = 'same' WHERE {column} = ?", (plan.id,))
    with hotpath.step_write(urls[0]) as writer:
        direct = _script(writer.execute, "same")
    with db.write(urls[1]) as conn:
        through_sqlalchemy = _script(hotpath._Rows(conn).execute, "same")
    assert direct == through_sqlalchemy
    assert direct[0][0]["started_at"] == AT and direct[0][0]["data"]["kind"] == "noop"
    assert _stored(urls[0]) == _stored(urls[1])
    assert all(_stored(urls[0]))
    loaded = [[s.model_dump() for s in Store(url).load("same").steps] for url in urls]
    assert loaded[0] == loaded[1]


def test_a_failed_block_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    plan = _running_plan(url)
    with pytest.raises(RuntimeError), hotpath.step_write(url) as writer:
        writer.execute(
            store_statements.CLAIM, {"pid": plan.id, "sid": "s0", "now": AT, "worker": "w"}
        )
        raise RuntimeError("the step crashed mid-transaction")
    assert Store(url).load(plan.id).step("s0").state is StepState.PENDING
    assert Store(url).claim(plan.id, "s0", "w") is not None  # the lock was released


def test_parallel_finishes_get_distinct_completion_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    plan = _running_plan(url, steps=16)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            barrier.wait()
            for sid in (f"s{offset}", f"s{offset + 8}"):
                assert Store(url).claim(plan.id, sid, f"w{offset}") is not None
                Store(url).finish(plan.id, sid, StepState.SUCCEEDED, output="ok")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    loaded = Store(url).load(plan.id)
    assert sorted(s.finished_seq or 0 for s in loaded.steps) == list(range(1, 17))
    assert {s.state for s in loaded.steps} == {StepState.SUCCEEDED}
    assert len([e for e in Store(url).events(plan.id) if e["kind"] == "step"]) == 16


def test_connections_reopen_after_dispose_and_stay_few(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    plan = _running_plan(url)
    first = hotpath._connection(url)
    assert hotpath._connection(url) is first
    db.dispose(url)
    second = hotpath._connection(url)
    assert second is not first
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute("SELECT 1")  # closed
    others = [
        f"sqlite:///{tmp_path / f'other{i}.db'}"
        for i in range(defaults.SQLITE_CONNECTIONS_KEPT + 2)
    ]
    for other in others:
        hotpath.read(other, store_statements.PLAN_STATE_READ, {"pid": "none"})
    assert len(hotpath._local.connections) == defaults.SQLITE_CONNECTIONS_KEPT
    with pytest.raises(sqlite3.ProgrammingError):
        second.execute("SELECT 1")  # the least recently used was closed
    assert Store(url).state(plan.id) is PlanState.RUNNING  # and reopens when used again
