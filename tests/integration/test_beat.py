"""Beat: the schedule from `schedule:` (cron via crontab), scheduled runs through the same
planner and autonomy, and a real beat process firing an entry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from celery.schedules import crontab

from overlord import schedule
from overlord.adapters.sql.store import Store
from overlord.cli.app import main
from overlord.core import config as config_module
from overlord.core.plan import PlanState
from overlord.errors import ConfigError
from tests.integration.test_worker_cli import EXAMPLE, configure, redis_db, start_worker, stop
from tests.kit import Workspace

DB = 11
PROJECTS = ("core", "api", "web", "tools")


def scheduled_autonomy(ws: Workspace, kinds: str = "[run-tests]") -> None:
    """Level `scheduled`, with ``kinds`` pre-approved for every project."""
    block = "autonomy:\n  global: scheduled\n  pre_approved:\n" + "".join(
        f"    {p}: {kinds}\n" for p in PROJECTS
    )
    text = ws.config_path.read_text()
    text = re.sub(r"autonomy:\n(  .*\n)+", block, text)
    ws.config_path.write_text(text)


def plan_rows(url: str) -> list[dict[str, object]]:
    from sqlalchemy import select

    from overlord.adapters.sql import db, schema

    with db.connect(url) as conn:
        return [
            dict(r)
            for r in conn.execute(select(schema.plans.c.id, schema.plans.c.state)).mappings()
        ]


def add_schedule(ws: Workspace, entries: dict[str, tuple[str, str]]) -> None:
    lines = ["", "schedule:"]
    for name, (cron, task) in entries.items():
        lines.append(f"  {name}: {{cron: {json.dumps(cron)}, task: {json.dumps(task)}}}")
    ws.config_path.write_text(ws.config_path.read_text() + "\n".join(lines) + "\n")


# --- pure -------------------------------------------------------------------------------


def test_cron_strings_become_crontabs() -> None:
    tab = schedule.to_crontab("30 2 * * 1-5")
    assert isinstance(tab, crontab)
    assert tab.minute == {30} and tab.hour == {2} and tab.day_of_week == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "cron, problem",
    [("61 * * * *", "not a valid cron"), ("* * *", "must have 5 fields"), ("0 25 * * *", "")],
)
def test_bad_cron_names_the_key(cron: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        schedule.to_crontab(cron, name="nightly")
    assert info.value.message.startswith("schedule.nightly.cron: ")
    assert problem in info.value.message
    assert "\n" not in info.value.message


def test_example_config_ships_a_nightly_schedule() -> None:
    config = config_module.load(EXAMPLE)
    beat = schedule.beat_schedule(config)
    assert {"nightly-tests", "nightly-stale-branches"} <= set(beat)
    for name, entry in beat.items():
        assert entry["task"] == "overlord.scheduled"
        assert entry["args"] == (name,)  # the name only: the text is re-read by the task
        assert entry["options"] == {"queue": "direct", "shadow": f"scheduled {name}"}
    tasks = {n: e.task for n, e in config.schedule.items()}
    assert tasks["nightly-tests"] == "run tests across all projects"
    assert "clean stale branches" in tasks["nightly-stale-branches"]


def test_app_carries_the_beat_schedule() -> None:
    from overlord.tasks.app import make_app

    config = config_module.load(EXAMPLE)
    app = make_app(config)
    # the configured entries, plus the periodic health check of the model endpoints
    assert set(app.conf.beat_schedule) == set(config.schedule) | {"overlord-health"}
    assert app.conf.beat_schedule["overlord-health"]["task"] == "overlord.health"
    assert "overlord.scheduled" in app.tasks


def test_beat_refuses_a_bad_cron_and_an_empty_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(EXAMPLE.read_text().replace('"0 2 * * *"', '"99 2 * * *"'))
    assert main(["--config", str(bad), "beat"]) == 2
    err = capsys.readouterr().err
    assert "schedule.nightly-app-tests.cron: '99 2 * * *' is not a valid cron" in err
    empty = tmp_path / "empty.yml"
    empty.write_text(EXAMPLE.read_text().split("schedule:")[0])
    assert main(["--config", str(empty), "beat"]) == 2
    assert "schedule: has no entries" in capsys.readouterr().err


# --- scheduled runs on Redis ------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_scheduled_run_executes_pre_approved_and_proposes_the_rest(
    workspace: Workspace, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from overlord.runner import wait
    from overlord.tasks.runtime import Runtime
    from overlord.tasks.scheduled import run_entry

    broker = redis_db(DB)
    scheduled_autonomy(workspace)
    add_schedule(
        workspace,
        {
            "nightly-tests": ("0 2 * * *", "run tests across all projects"),
            "stale": ("0 3 * * *", "clean stale branches across all projects"),
        },
    )
    path = configure(workspace, broker)
    config = config_module.load(path)
    with Runtime(config, worker=True) as runtime:
        assert runtime.app is not None
        ran = run_entry(config, "nightly-tests", runtime.app)
        proposed = run_entry(config, "stale", runtime.app)
        assert ran["state"] in ("running", "succeeded")
        plan = wait(config, ran["plan"], timeout=60)
    assert plan.state is PlanState.SUCCEEDED
    assert plan.scheduled_run and plan.options["schedule"] == "nightly-tests"
    assert proposed["state"] == "pending"
    assert "not pre-approved: clean-stale-branches" in proposed["reason"]
    # the entry fires again before anyone answered: no second proposal
    again = run_entry(config, "stale", runtime.app)
    assert again["plan"] == proposed["plan"] and "still waiting" in again["reason"]
    assert main(["--config", str(path), "plans", "--status", "pending", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    rows = listed if isinstance(listed, list) else listed.get("plans", [])
    assert [r["id"] for r in rows] == [proposed["plan"]]


@pytest.mark.parametrize("mode", ["embedded", "redis"])
def test_overlapping_firings_of_an_entry_save_one_proposal(workspace: Workspace, mode: str) -> None:
    # A worker runs several beat firings at once, and workers on other machines run
    # theirs: firings of one entry that overlap must still leave one proposal waiting.
    import threading

    from overlord import dispatching
    from overlord.core.parser import parse_all
    from overlord.core.registry import Registry

    add_schedule(workspace, {"stale": ("0 3 * * *", "clean stale branches across all projects")})
    path = configure(workspace, redis_db(DB) if mode == "redis" else None)
    config = config_module.load(path)
    firings = 6
    barrier = threading.Barrier(firings)
    answers: list[dict[str, object]] = []

    def never(plan_id: str) -> None:
        raise AssertionError(f"a proposal was started: {plan_id}")

    def fire() -> None:
        plan = dispatching.plan_intents(
            config, parse_all(config.schedule["stale"].task, Registry(config))
        )
        barrier.wait()
        answers.append(dispatching.scheduled(config, plan, schedule="stale", start=never))

    threads = [threading.Thread(target=fire) for _ in range(firings)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == firings
    pending = [r for r in plan_rows(str(config.state_url)) if r["state"] == "pending"]
    assert len(pending) == 1, pending
    assert {a["plan"] for a in answers} == {pending[0]["id"]}


BEAT_SCRIPT = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from overlord.core import config as config_module
    from overlord.tasks.app import make_app
    config = config_module.load(sys.argv[1])
    app = make_app(config)
    for entry in app.conf.beat_schedule.values():
        entry["schedule"] = timedelta(seconds=1)  # the entry as configured, fired quickly
    app.start(["beat", "--loglevel", "INFO", "--schedule", sys.argv[2], "--max-interval", "1"])
    """
)


def start_beat(path: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Celery beat for the config at ``path`` (BEAT_SCRIPT), logging to tmp_path/beat.log."""
    log = (tmp_path / "beat.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", BEAT_SCRIPT, str(path), str(tmp_path / "beat-schedule")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.redis
@pytest.mark.slow
def test_a_real_beat_process_fires_the_entry(
    workspace: Workspace, redis_url: str, tmp_path: Path
) -> None:
    broker = redis_db(DB)
    scheduled_autonomy(workspace)
    add_schedule(workspace, {"nightly-tests": ("0 2 * * *", "run tests in tools")})
    path = configure(workspace, broker)
    config = config_module.load(path)
    assert config.state_url
    store = Store(config.state_url)
    worker = start_worker(path, ["direct"], tmp_path / "worker.log")
    beat = start_beat(path, tmp_path)
    try:
        deadline = time.monotonic() + 60
        done: list[dict[str, object]] = []
        while time.monotonic() < deadline and not done:
            done = [p for p in plan_rows(config.state_url) if p["state"] == "succeeded"]
            time.sleep(0.3)
    finally:
        stop(beat)
        stop(worker)
    assert done, (tmp_path / "beat.log").read_text()
    plan = store.load(str(done[0]["id"]))
    assert plan.task == "run tests in tools" and plan.scheduled_run
    assert plan.options["schedule"] == "nightly-tests"
    assert "Scheduler: Sending due task nightly-tests" in (tmp_path / "beat.log").read_text()
