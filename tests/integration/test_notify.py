"""Webhooks (SPEC §1 ``notify:``): a plan's transitions reach the person, against a real
HTTP server on 127.0.0.1 that records what it is sent."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from overlord import defaults, notify, webhooks
from overlord.core.config import ActionKind
from overlord.core.plan import DispatchPlan, DispatchStep, PlanState, StepState
from tests.dispatch_helpers import cli, configure, run_overlord, run_text
from tests.hook_server import HookServer
from tests.kit import Workspace, add_failing_test

DB = 15  # a Redis database of its own (beat test)
TOKEN = "T0SECRET/B0SECRET/xoxb-webhook-token-must-never-show"


def hook(url: str, fmt: str = "json", events: list[str] | None = None) -> dict[str, Any]:
    return {"url": url, "format": fmt, "events": events or ["pending"]}


def deliveries(ws: Workspace, plan_id: str) -> list[str]:
    res = cli(ws.config_path, "plans", "show", plan_id, "--json")
    assert res.code == 0, res.err
    return [d["delivery"] for d in res.json()["deliveries"]]


@pytest.fixture(autouse=True)
def _no_leftover_deliveries() -> Any:
    yield
    webhooks.drain(0)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        ({"url": "http://127.0.0.1:9/h", "format": "xml"}, "notify.0.format", "'json' or 'slack'"),
        (
            {"url": "http://127.0.0.1:9/h", "events": ["pending", "oops"]},
            "notify.0.events",
            "'oops'",
        ),
        ({"url": "http://127.0.0.1:9/h", "colour": "red"}, "notify.0.colour", "unknown key"),
        ({"format": "slack"}, "notify.0", "exactly one of url or url_env"),
        (
            {"url_env": "https://hooks.example/" + TOKEN},
            "notify.0.url_env",
            "NAME of an environment",
        ),
    ],
)
def test_bad_notify_entries_are_refused_in_one_line(
    workspace: Workspace, entry: dict[str, Any], key: str, problem: str
) -> None:
    text = workspace.config_path.read_text() + "\nnotify:\n  - " + json.dumps(entry) + "\n"
    workspace.config_path.write_text(text)
    res = cli(workspace.config_path, "notify")
    assert res.code == 2, res.text
    lines = res.err.strip().splitlines()
    assert lines[0].startswith(f"error: {workspace.config_path}: {key}: "), res.err
    assert problem in res.text and "Traceback" not in res.text
    assert TOKEN not in res.text  # a URL put where a variable name belongs is not echoed


# --- what is said -----------------------------------------------------------------------


def test_what_a_webhook_is_told(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value")
    config = configure(
        workspace,
        notify=[hook("http://127.0.0.1:9/x"), {"url_env": "HOOK", "format": "slack"}],
        models={
            "cloud": {
                "endpoint": "http://127.0.0.1:9/v1",
                "model": "m",
                "tier": "cloud-fast",
                "api_key_env": "ANTHROPIC_API_KEY",
            }
        },
    )
    failed = DispatchStep(
        id="s2",
        kind=ActionKind.RUN_TESTS,
        project="api",
        state=StepState.FAILED,
        error="tests failed with key sk-ant-secret-value\nE   assert 1 == 2\nlots of output",
    )
    plan = DispatchPlan(
        id="abc1234567",
        task="run tests in core and api <!channel>",
        steps=[DispatchStep(id="s1", kind=ActionKind.RUN_TESTS, project="core"), failed],
    )
    pending = notify.facts(plan, PlanState.PENDING, config)
    assert notify.payload(config.notify[0], pending) == {
        "plan": "abc1234567",
        "state": "pending",
        "task": "run tests in core and api <!channel>",
        "projects": ["api", "core"],
        "approve": "overlord approve abc1234567",
        "reason": None,
    }
    slack = notify.payload(config.notify[1], pending)["text"]
    assert "`overlord approve abc1234567`" in slack
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack  # no mass ping
    push = notify.facts(plan, PlanState.AWAITING_PUSH, config)
    assert push.state == "awaiting-push" and push.approve == "overlord approve abc1234567"
    assert "approval to push" in notify.slack_text(push)
    failing = notify.facts(plan, PlanState.FAILING, config)
    assert failing.state == "failed" and failing.approve is None
    assert failing.reason == "s2 run-tests api: tests failed with key ***"  # one line, redacted
    assert notify.label(1, config.notify[0]) == "webhook 1 (json, http://127.0.0.1:9/…)"
    assert notify.label(2, config.notify[1]) == "webhook 2 (slack, $HOOK)"


def test_a_cancel_is_told_as_cancelled_not_as_a_failure(workspace: Workspace) -> None:
    """Every committed move notifies (here made through the lifecycle directly); a cancel
    rolls back through `failing`, which is not a failure to report."""
    from overlord.adapters.sql.store import Store
    from overlord.lifecycle import Move, move

    with HookServer() as server:
        config = configure(
            workspace, notify=[hook(server.url(), "json", ["running", "failed", "cancelled"])]
        )
        notify.install(config)
        assert config.state_url
        store = Store(config.state_url)
        plan = DispatchPlan(task="run tests in tools", state=PlanState.RUNNING, steps=[])
        store.save(plan)
        assert move(store, plan.id, Move.CANCEL, error="cancelled")
        assert move(store, plan.id, Move.CANCELLED)
        assert webhooks.wait_idle(30)
        assert sorted(b["state"] for b in server.bodies()) == ["cancelled", "running"]


def test_webhook_urls_are_secrets(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's commands never see a webhook URL, and no stored text holds one."""
    from overlord.core import secrets

    secret_url = "https://hooks.example/services/" + TOKEN
    monkeypatch.setenv("OVERLORD_SLACK_WEBHOOK", secret_url)
    config = configure(
        workspace,
        notify=[
            {"url_env": "OVERLORD_SLACK_WEBHOOK", "format": "slack"},
            hook("https://in-file.example/hook/another-token"),
        ],
    )
    assert "OVERLORD_SLACK_WEBHOOK" not in secrets.scrubbed_env(config)
    said = secrets.redact(f"echo {secret_url}; curl https://in-file.example/hook/another-token")
    assert TOKEN not in said and "another-token" not in said


def test_notify_test_sends_a_sample_to_every_webhook(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HookServer() as ok, HookServer(default=500) as broken:
        secret_url = ok.url("/services/" + TOKEN)
        monkeypatch.setenv("OVERLORD_TEST_HOOK", secret_url)
        configure(
            workspace,
            notify=[
                {"url_env": "OVERLORD_TEST_HOOK", "format": "slack"},
                hook(ok.url("/plain"), "json"),
                {"url_env": "OVERLORD_UNSET_HOOK"},
                hook(broken.url("/x")),
            ],
        )
        monkeypatch.delenv("OVERLORD_UNSET_HOOK", raising=False)
        monkeypatch.setattr(defaults, "WEBHOOK_BACKOFF", (0.0, 0.0))
        res = cli(workspace.config_path, "notify", "--test")
        assert res.code == 1, res.text  # not every webhook answered
        lines = res.out.strip().splitlines()
        assert (
            lines[0]
            == "webhook 1 (slack, $OVERLORD_TEST_HOOK): delivered (HTTP 200, attempt 1 of 3)"
        )
        assert lines[1].startswith("webhook 2 (json, http://127.0.0.1:") and "delivered" in lines[1]
        assert (
            lines[2]
            == "webhook 3 (json, $OVERLORD_UNSET_HOOK): not delivered ($OVERLORD_UNSET_HOOK is not set)"
        )
        assert lines[3].endswith("not delivered (HTTP 500 after 3 attempts)")
        assert TOKEN not in res.text and "/plain" not in res.text
        paths = sorted(r["path"] for r in ok.requests)
        assert paths == ["/plain", "/services/" + TOKEN]
        slack = next(r["json"] for r in ok.requests if r["path"] != "/plain")
        assert "test notification" in slack["text"]
        assert len(broken.requests) == 3
        listed = cli(workspace.config_path, "notify")
        assert listed.code == 0 and "$OVERLORD_TEST_HOOK" in listed.out
        assert TOKEN not in listed.text


# --- plans notify ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_cautious_plan_posts_one_pending_with_the_approve_command(
    synced_workspace: Workspace,
) -> None:
    ws = synced_workspace
    with HookServer() as server:
        configure(
            ws,
            autonomy={"global": "cautious"},
            notify=[hook(server.url(), "json", ["pending", "succeeded", "failed"])],
        )
        proc = run_overlord(ws.config_path, "dispatch", "run tests in tools", "--json")
        assert proc.returncode == 3, proc.stderr  # waiting for approval
        plan = json.loads(proc.stdout)
        # the command returned after its delivery finished: nothing more will come
        assert server.bodies() == [
            {
                "plan": plan["id"],
                "state": "pending",
                "task": "run tests in tools",
                "projects": ["tools"],
                "approve": f"overlord approve {plan['id']}",
                "reason": None,
            }
        ]
        assert server.requests[0]["headers"]["Content-Type"] == "application/json"
        assert deliveries(ws, plan["id"]) == [
            f"pending -> webhook 1 (json, {server.url('')}/…): delivered (HTTP 200, attempt 1 of 3)"
        ]
        shown = run_overlord(ws.config_path, "plans", "show", plan["id"])
        assert "notifications:" in shown.stdout and "delivered (HTTP 200" in shown.stdout


@pytest.mark.slow
def test_a_failed_plan_posts_failed_then_rolled_back(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    add_failing_test(ws.repos["web"])
    with HookServer() as server:
        configure(ws, notify=[hook(server.url(), "slack", ["failed", "rolled-back", "pending"])])
        res = cli(ws.config_path, "dispatch", "--yes", "run tests in web", "--json")
        assert res.code == 1, res.text
        plan = res.json()
        assert plan["state"] == "rolled-back"
        texts = [b["text"] for b in server.bodies()]
        assert len(texts) == 2, texts
        assert texts[0].startswith(f"Overlord plan `{plan['id']}` failed: run tests in web (web)")
        assert "Reason: s1 run-tests web: " in texts[0]
        assert texts[1].startswith(f"Overlord plan `{plan['id']}` failed and was rolled back")
        output = plan["steps"][0]["output"]
        assert "test_fails_on_purpose" in output  # the raw output is on the plan ...
        assert all("test_fails_on_purpose" not in t for t in texts)  # ... never sent
        assert [d.split(" -> ")[0] for d in deliveries(ws, plan["id"])] == ["failed", "rolled-back"]


@pytest.mark.slow
def test_a_webhook_that_fails_twice_then_answers_gets_it_on_the_third_attempt(
    synced_workspace: Workspace,
) -> None:
    ws = synced_workspace
    with HookServer(script=[500, 503]) as server:
        configure(ws, autonomy={"global": "cautious"}, notify=[hook(server.url())])
        res = cli(ws.config_path, "dispatch", "run tests in tools", "--json")
        assert res.code == 3
        plan_id = res.json()["id"]
        bodies = server.bodies()
        assert len(bodies) == 3 and all(b == bodies[0] for b in bodies)
        assert deliveries(ws, plan_id) == [
            f"pending -> webhook 1 (json, {server.url('')}/…): delivered (HTTP 200, attempt 3 of 3)"
        ]


@pytest.mark.slow
def test_a_hanging_webhook_never_holds_the_plan(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    with HookServer(default="hang") as server:
        config = configure(ws, notify=[hook(server.url(), "json", ["running", "succeeded"])])
        notify.install(config)  # what loading the config for a command does
        plan = run_text(config, "run tests in tools", yes=True)
        # the plan ran to its end while the POST of its `running` was still unanswered
        assert plan.state is PlanState.SUCCEEDED
        assert server.hanging >= 1 and webhooks.pending() >= 1
        assert server.requests[0]["json"]["state"] == "running"
        # a process that ends now records what it could not deliver
        assert webhooks.drain(0.5) >= 1
        recorded = deliveries(ws, plan.id)
        assert any("the process exited during attempt 1 of 3" in d for d in recorded), recorded


@pytest.mark.slow
def test_the_command_waits_boundedly_for_a_hanging_webhook_and_records_it(
    synced_workspace: Workspace,
) -> None:
    ws = synced_workspace
    with HookServer(default="hang") as server:
        configure(ws, autonomy={"global": "cautious"}, notify=[hook(server.url())])
        proc = run_overlord(ws.config_path, "dispatch", "run tests in tools", "--json", timeout=60)
        assert proc.returncode == 3
        plan_id = json.loads(proc.stdout)["id"]
        assert "waiting for 1 webhook delivery" in proc.stderr
        assert len(server.requests) >= 1
        assert deliveries(ws, plan_id) == [
            f"pending -> webhook 1 (json, {server.url('')}/…): not delivered "
            f"(the process exited during attempt {len(server.requests)} of 3)"
        ]


@pytest.mark.slow
def test_a_url_env_webhook_url_never_appears_in_output_or_the_database(
    synced_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = synced_workspace
    add_failing_test(ws.repos["web"])
    with HookServer() as server:
        secret_url = server.url("/services/" + TOKEN)
        monkeypatch.setenv("OVERLORD_SLACK_WEBHOOK", secret_url)
        config = configure(
            ws,
            autonomy={"global": "cautious"},
            notify=[{"url_env": "OVERLORD_SLACK_WEBHOOK", "format": "slack"}],
        )
        printed = []
        pending = run_overlord(ws.config_path, "dispatch", "run tests in tools")
        printed += [pending.stdout, pending.stderr]
        plan_id = pending.stdout.split("plan ")[1].split()[0].strip(":")
        for args in (
            ("dispatch", "--yes", "run tests in web"),
            ("plans", "show", plan_id),
            ("plans", "show", plan_id, "--json"),
            ("notify",),
            ("notify", "--test"),
            ("notify", "--test", "--json"),
        ):
            proc = run_overlord(ws.config_path, *args)
            printed += [proc.stdout, proc.stderr]
        assert len(server.requests) >= 5  # pending, failed, rolled-back, two tests
        assert {r["path"] for r in server.requests} == {"/services/" + TOKEN}
        assert "$OVERLORD_SLACK_WEBHOOK" in "".join(printed)
        for text in printed:
            assert TOKEN not in text and "/services/" not in text
        assert config.state_url
        database = Path(config.state_url.removeprefix("sqlite:///"))
        with sqlite3.connect(database) as conn:
            conn.execute("PRAGMA wal_checkpoint(FULL)")
            dump = "\n".join(conn.iterdump())
        assert "webhook 1 (slack, $OVERLORD_SLACK_WEBHOOK): delivered" in dump
        assert TOKEN not in dump and "/services/" not in dump
        for file in database.parent.glob(database.name + "*"):
            assert TOKEN.encode() not in file.read_bytes()


@pytest.mark.redis
@pytest.mark.slow
def test_a_beat_run_that_becomes_a_pending_proposal_notifies_too(
    workspace: Workspace, redis_url: str, tmp_path: Path
) -> None:
    """Real beat and worker processes: the worker that saves the proposal POSTs it."""
    import time

    from tests.integration.test_beat import add_schedule, scheduled_autonomy, start_beat
    from tests.integration.test_worker_cli import configure as add_yaml
    from tests.integration.test_worker_cli import redis_db, start_worker, stop

    with HookServer() as server:
        scheduled_autonomy(workspace)  # run-tests pre-approved; cleaning branches is not
        add_schedule(workspace, {"nightly-clean": ("0 3 * * *", "clean stale branches in tools")})
        notify_yaml = "\nnotify:\n  - " + json.dumps(hook(server.url(), "json", ["pending"]))
        path = add_yaml(workspace, redis_db(DB), notify_yaml + "\n")
        worker = start_worker(path, ["direct"], tmp_path / "worker.log")
        beat = start_beat(path, tmp_path)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not server.requests:
                time.sleep(0.2)
        finally:
            stop(beat)
            stop(worker)
        assert server.requests, (tmp_path / "worker.log").read_text()[-3000:]
        first = server.bodies()[0]
        assert first["state"] == "pending" and first["task"] == "clean stale branches in tools"
        assert first["approve"] == f"overlord approve {first['plan']}"
        # one proposal per entry: beat firing again does not notify again
        assert {b["plan"] for b in server.bodies()} == {first["plan"]}
        assert deliveries(workspace, first["plan"])[0].startswith("pending -> webhook 1 (json")


def test_a_url_env_holding_no_url_is_reported_without_its_value(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERLORD_BAD_HOOK", "hooks.example/" + TOKEN)  # no scheme
    configure(workspace, notify=[{"url_env": "OVERLORD_BAD_HOOK"}])
    res = cli(workspace.config_path, "notify", "--test")
    assert res.code == 1
    assert res.out.strip() == (
        "webhook 1 (json, $OVERLORD_BAD_HOOK): not delivered (not an http:// or https:// URL)"
    )
    assert TOKEN not in res.text
