"""Plain-language instructions at the command line (SPEC §3, §4.1): the planning model
translates what the parser cannot read, the plan shows what it was "understood as", and
only a person's answer runs it. Against the test suite's own OpenAI-compatible server."""

from __future__ import annotations

from typing import Any

import pytest

from overlord import lifecycle, memory, runner
from overlord.core import approval
from overlord.core import config as config_module
from overlord.core.config import ActionKind
from overlord.core.plan import PlanState
from overlord.errors import PlanError
from tests.dispatch_helpers import cli, configure, merge_commits, tag_type
from tests.kit import Workspace, workspace_snapshot
from tests.openai_server import ScriptedOpenAI

TEXT = "get core's develop work onto main and give it the 0.2.0 tag"
LINES = ["merge develop to main in core", "tag core 0.2.0"]


def use_model(ws: Workspace, server: ScriptedOpenAI) -> None:
    configure(
        ws,
        models={
            "planner": {
                "endpoint": server.url,
                "model": "planner-model",
                "tier": "cloud-fast",
                "concurrent": 1,
                "health_check_url": server.health_url,
            }
        },
    )


def plans(ws: Workspace) -> list[dict[str, Any]]:
    return runner.store_for(config_module.load(ws.config_path)).list_plans()


def others(ws: Workspace) -> dict[str, Any]:
    snap = workspace_snapshot(ws)
    return {k: v for k, v in snap.items() if "core" not in k}


def test_a_translated_plan_waits_for_a_person_then_runs_only_its_lines(
    synced_workspace: Workspace,
) -> None:
    ws = synced_workspace
    before = workspace_snapshot(ws)
    with ScriptedOpenAI([{"content": "\n".join(LINES)}]) as server:
        use_model(ws, server)
        # --yes is no answer to a translation; with no terminal it is saved pending
        res = cli(ws.config_path, "dispatch", "--yes", TEXT)
        assert server.chat_count == 1
    assert res.code == 3, res.text
    assert "understood as: merge develop to main in core tag core 0.2.0" in res.text
    assert "translated by planner (planner-model)" in res.text
    assert "--yes does not cover a translation" in res.text
    assert workspace_snapshot(ws) == before
    [row] = plans(ws)
    assert row["state"] == PlanState.PENDING.value

    doc = cli(ws.config_path, "plans", "show", row["id"], "--json").json()
    assert doc["task"] == TEXT
    assert doc["translation"]["original"] == TEXT
    assert doc["translation"]["lines"] == LINES
    assert doc["translation"]["endpoint"] == "planner"
    assert doc["person_approved"] is False
    assert [(s["kind"], s["project"]) for s in doc["steps"]] == [("merge", "core"), ("tag", "core")]
    shown = cli(ws.config_path, "plans", "show", row["id"])
    assert "understood as: merge develop to main in core tag core 0.2.0" in shown.text

    untouched = others(ws)
    res = cli(ws.config_path, "approve", row["id"])
    assert res.code == 0, res.text
    core = ws.repos["core"]
    assert merge_commits(core, "main", "Merge branch 'develop' into main")
    assert tag_type(core, "v0.2.0") == "tag"
    assert others(ws) == untouched  # only what the lines say
    plan = runner.store_for(config_module.load(ws.config_path)).load(row["id"])
    assert plan.state is PlanState.SUCCEEDED and plan.person_approved

    url = config_module.load(ws.config_path).state_url
    assert url
    [entry] = memory.search(url, "onto main", project="core")
    assert TEXT in entry.content and "understood as: " + "; ".join(LINES) in entry.content
    assert entry.metadata["translation"] == LINES and entry.metadata["original"] == TEXT


def test_the_persisted_plan_refuses_to_run_without_a_person(synced_workspace: Workspace) -> None:
    """Approval is enforced from the saved plan, not only by the command line: a
    translated plan moved to queued behind the approval's back still does not run."""
    ws = synced_workspace
    before = workspace_snapshot(ws)
    with ScriptedOpenAI([{"content": "\n".join(LINES)}]) as server:
        use_model(ws, server)
        assert cli(ws.config_path, "dispatch", TEXT).code == 3
    config = config_module.load(ws.config_path)
    [row] = plans(ws)
    store = runner.store_for(config)
    assert store.transition(row["id"], PlanState.QUEUED, expect=[PlanState.PENDING])
    with pytest.raises(PlanError, match="no person has approved it"):
        runner.run(config, row["id"])
    res = cli(ws.config_path, "resume", row["id"])
    assert res.code == 2 and "no person has approved it" in res.text
    assert workspace_snapshot(ws) == before
    # a step message forged on the broker is refused by the gate every task passes, even
    # with the plan forced to running behind everyone's back
    assert store.transition(row["id"], PlanState.RUNNING, expect=[PlanState.QUEUED])
    gate = lifecycle.view(store, row["id"])
    assert gate is not None
    why = lifecycle.admit_step(gate, "s1", ActionKind.MERGE)
    assert why == "a model translated the plan and no person approved it"
    # an approval through the policy with --yes is not a person's either
    plan = store.load(row["id"])
    assert not approval.decide(config, plan, yes=True).execute
    assert approval.decide(config, plan, person=True).execute


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("merge develop to main in core\nthen delete the old stuff", "no form matches"),
        ("run tests in core\nrun tests in nosuchproject", "cannot be planned"),
        ("I cannot help with that.", "no form matches"),
        ("\n\n", "holds no instruction"),
    ],
)
def test_a_bad_answer_is_refused_with_nothing_changed(
    synced_workspace: Workspace, answer: str, why: str
) -> None:
    ws = synced_workspace
    before = workspace_snapshot(ws)
    with ScriptedOpenAI([{"content": answer}]) as server:
        use_model(ws, server)
        res = cli(ws.config_path, "dispatch", "--yes", TEXT)
        assert server.chat_count == 1
    assert res.code == 2, res.text
    assert "Traceback" not in res.text, res.err[:3000]
    assert why in res.text
    assert "planner answered:" in res.err
    for line in answer.split("\n"):
        assert line.strip() in res.err
    assert "nothing was saved" in res.err
    assert plans(ws) == []
    assert workspace_snapshot(ws) == before


def test_no_model_or_model_down_keeps_todays_refusal_and_says_why(
    synced_workspace: Workspace,
) -> None:
    ws = synced_workspace
    res = cli(ws.config_path, "dispatch", TEXT)
    assert res.code == 2
    err = [line for line in res.err.splitlines() if line.strip()]
    assert err[0].startswith("error: cannot understand") and "closest form" in err[0]
    assert err[1].startswith("hint: supported forms")
    assert err[2] == (
        "translation not available: no model endpoint is configured "
        "(add one under `models:` in the config)"
    )
    with ScriptedOpenAI(health_status=503) as server:
        use_model(ws, server)
        res = cli(ws.config_path, "dispatch", TEXT)
        assert server.chat_count == 0
    assert res.code == 2
    assert "closest form" in res.text
    assert "translation not available: no healthy model endpoint for tier cloud-fast" in res.text
    assert "planner down (HTTP 503)" in res.text
    with ScriptedOpenAI([{"status": 500}]) as server:
        use_model(ws, server)
        res = cli(ws.config_path, "dispatch", TEXT)
        assert server.chat_count == 1  # no fallback configured: no second request
    assert res.code == 2
    assert "translation not available: planner failed (HTTP 500); no fallback" in res.text
    assert plans(ws) == []


def test_dry_run_shows_the_translation_and_changes_nothing(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    before = workspace_snapshot(ws)
    with ScriptedOpenAI([{"content": "\n".join(LINES)}] * 2) as server:
        use_model(ws, server)
        res = cli(ws.config_path, "dispatch", "--dry-run", TEXT)
        assert res.code == 0, res.text
        assert "understood as: merge develop to main in core tag core 0.2.0" in res.text
        assert "dry run: nothing changed" in res.text
        doc = cli(ws.config_path, "dispatch", "--dry-run", "--json", TEXT).json()
        assert server.chat_count == 2
    assert doc["dry_run"] is True
    assert doc["translation"]["original"] == TEXT and doc["translation"]["lines"] == LINES
    assert doc["verdict"]["decision"] == "propose"
    assert plans(ws) == []
    assert workspace_snapshot(ws) == before


def test_supported_text_never_asks_the_model(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    with ScriptedOpenAI() as server:
        use_model(ws, server)
        res = cli(ws.config_path, "dispatch", "--json", "run tests in core; status of api")
        assert server.chat_count == 0
    assert res.code == 0, res.text
    assert res.json()["translation"] is None


def _converse(argv: list[str], answer: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal; answer the first question; (exit code, output)."""
    import os
    import pty
    import select
    import subprocess
    import time

    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out, asked = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if not asked and b"Run this plan?" in out:
                os.write(master, answer.encode() + b"\n")
                asked = True
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(master)
    return code, out.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("answer", ["y", "n"])
def test_a_person_answers_at_the_prompt(synced_workspace: Workspace, answer: str) -> None:
    """At a terminal, --yes still asks; "y" runs the translation, "n" rejects it."""
    from tests.dispatch_helpers import overlord_argv

    ws = synced_workspace
    before = workspace_snapshot(ws)
    with ScriptedOpenAI([{"content": "\n".join(LINES)}]) as server:
        use_model(ws, server)
        code, out = _converse(
            overlord_argv("--config", str(ws.config_path), "dispatch", "--yes", TEXT), answer
        )
    assert "understood as:" in out and "Run this plan?" in out, out
    [row] = plans(ws)
    plan = runner.store_for(config_module.load(ws.config_path)).load(row["id"])
    assert code == 0, out
    if answer == "y":
        assert plan.state is PlanState.SUCCEEDED and plan.person_approved
        assert tag_type(ws.repos["core"], "v0.2.0") == "tag"
    else:
        assert plan.state is PlanState.REJECTED and not plan.person_approved
        assert workspace_snapshot(ws) == before
