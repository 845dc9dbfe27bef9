"""Secrets never reach a project's commands nor any printed or stored text (SPEC §4.6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overlord.core import config as config_module
from overlord.core import secrets
from tests.dispatch_helpers import cli, configure
from tests.kit import Workspace, add_commit

KEY = "sk-ant-test-KEY-0f3a9c1e77"
PASSWORD = "hunter2-db-PASSWORD"
BROKER_PASSWORD = "brokerPW-5a5a5a"
#: Prints each secret the environment might hold, and one from a file in the repository
#: (the env is scrubbed; the file's copy is what redaction must catch).
ECHO = (
    "sh -c 'echo token=$ANTHROPIC_API_KEY; echo db=$APP_DB_URL; echo flower=$FLOWER_BASIC_AUTH;"
    " cat leak.txt; exit 1'"
)


def test_mask_and_redact_by_name_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert secrets.mask_url("redis://:pw-123@redis:6379/0") == "redis://:***@redis:6379/0"
    assert secrets.mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert secrets.mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:flowerPW-77")
    text = secrets.redact("auth admin:flowerPW-77 at amqp://x:y-secret@h/")
    assert "flowerPW-77" not in text and "y-secret" not in text
    env = secrets.scrubbed_env(
        base={"PATH": "/bin", "FLOWER_BASIC_AUTH": "a:b", "U": "redis://:p@h"}
    )
    assert env == {"PATH": "/bin"}


def test_a_test_command_that_echoes_secrets_leaks_nowhere(
    synced_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ws = synced_workspace
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("APP_DB_URL", f"postgresql://app:{PASSWORD}@127.0.0.1/app")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:flowerPW-9f9f")
    add_commit(ws.repos["core"], "leak.txt", f"file={KEY}\n", "a file quoting the key")
    configure(
        ws,
        projects={"core": {"test_command": ECHO}},
        models={
            "cloud-fast": {
                "endpoint": "http://127.0.0.1:9/v1",
                "model": "m",
                "tier": "cloud-fast",
                "api_key_env": "ANTHROPIC_API_KEY",
            }
        },
    )
    run = cli(ws.config_path, "dispatch", "--yes", "run tests in core", "--json")
    assert run.code == 1, run.out + run.err
    doc = run.json()
    step = doc["steps"][0]
    # the command ran without the secrets in its environment ...
    assert "token=\n" in step["output"] and "db=\n" in step["output"]
    assert "flower=\n" in step["output"]
    # ... and what it printed from elsewhere is redacted
    assert "file=***" in step["output"], step["output"]
    plan_id = doc["id"]
    outputs = [
        run.out + run.err,
        cli(ws.config_path, "dispatch", "--yes", "run tests in core").text,
        cli(ws.config_path, "plans", "show", plan_id, "--json").out,
        cli(ws.config_path, "plans", "show", plan_id).text,
        cli(ws.config_path, "memory", "search", "tests").text,
        cli(ws.config_path, "report", "--json").out,
        cli(ws.config_path, "report").text,
    ]
    state_url = config_module.load(ws.config_path).state_url or ""
    db_file = Path(state_url.removeprefix("sqlite:///"))
    files = list(db_file.parent.glob(db_file.name + "*"))  # the file, its WAL and index
    assert db_file in files
    database = b"".join(p.read_bytes() for p in files)
    assert b"token=" in database  # the step output is there, without the key
    for secret in (KEY, PASSWORD, "flowerPW-9f9f"):
        for text in outputs:
            assert secret not in text
        assert secret.encode() not in database
    json.loads(outputs[2])  # still valid JSON


def test_broker_password_is_masked_in_the_unreachable_error(synced_workspace: Workspace) -> None:
    ws = synced_workspace
    configure(ws, broker_url=f"redis://:{BROKER_PASSWORD}@127.0.0.1:9/0")
    res = cli(ws.config_path, "dispatch", "--yes", "run tests in core")
    assert res.code == 2, res.out + res.err
    assert "cannot reach the broker at redis://:***@127.0.0.1:9/0" in res.text
    assert BROKER_PASSWORD not in res.out + res.err
    res = cli(ws.config_path, "worker", "--queue", "direct")
    assert res.code == 2 and BROKER_PASSWORD not in res.out + res.err


def test_broker_password_comes_from_the_environment(
    synced_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", BROKER_PASSWORD)
    configure(synced_workspace, broker_url="redis://:${REDIS_PASSWORD}@127.0.0.1:9/0")
    config = config_module.load(synced_workspace.config_path)
    assert config.broker_url == f"redis://:{BROKER_PASSWORD}@127.0.0.1:9/0"
    assert secrets.redact(f"x {BROKER_PASSWORD} y") == "x *** y"
