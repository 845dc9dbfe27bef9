"""A plain ``overlord status`` of a file whose very bytes it validated before reads the
digest instead of validating again (``core.status_config``): the same output, paths
resolved afresh, secret names still kept from git, and any change validated again."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from overlord import defaults
from overlord.core import config as config_mod
from overlord.core import status_config
from tests.kit import Workspace, entry_loaded, run_entry


def _status(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, bool]:
    """(exit code, stdout, whether pydantic was loaded) of a plain ``status --json``."""
    proc = run_entry("status", "--json", *args, "--config", str(config), env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout if proc.returncode == 0 else proc.stderr
    return proc.returncode, out, "pydantic" in entry_loaded(proc)


def _rows(out: str) -> list[dict]:  # type: ignore[type-arg]
    doc = json.loads(out)["projects"]
    for row in doc:
        for branch in row["stale_branches"] + row["old_unmerged"]:
            branch.pop("age_days")
    return doc


def _digest(ws: Workspace) -> Path:
    return ws.config_path.parent / defaults.CONFIG_DIGEST_FILE


def test_second_status_reads_the_digest(workspace: Workspace) -> None:
    code, first, validated = _status(workspace.config_path)
    assert code == 0 and validated and _digest(workspace).is_file()
    code, second, validated = _status(workspace.config_path)
    assert code == 0 and not validated
    assert _rows(second) == _rows(first)


def test_any_changed_byte_is_validated_again(workspace: Workspace) -> None:
    assert _status(workspace.config_path)[0] == 0
    text = workspace.config_path.read_text()
    workspace.config_path.write_text(text + "# a comment\n")
    code, _, validated = _status(workspace.config_path)
    assert code == 0 and validated
    workspace.config_path.write_text(text + "bogus: 1\n")
    code, err, _ = _status(workspace.config_path)
    assert code == 2 and "bogus: unknown key" in err
    workspace.config_path.write_text(text)  # the first bytes: their digest is still kept
    assert _status(workspace.config_path)[2] is False


def test_paths_are_resolved_at_each_run(workspace: Workspace, tmp_path: Path) -> None:
    """The digest keeps paths as written: ``$VAR`` and relative paths follow the
    environment and the file's place at each run, as a validation would."""
    text = workspace.config_path.read_text()
    repos = str(workspace.root / "repos")
    workspace.config_path.write_text(
        text.replace(f'workspace: "{repos}"', 'workspace: "$WS_ROOT"').replace(f"{repos}/", "")
    )
    code, first, validated = _status(workspace.config_path, env={"WS_ROOT": repos})
    assert code == 0 and validated
    assert all(row["ok"] for row in json.loads(first)["projects"])
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(repos, elsewhere / "repos", symlinks=True)
    moved = elsewhere / "overlord.yml"
    shutil.copy(workspace.config_path, moved)
    shutil.copy(_digest(workspace), elsewhere / defaults.CONFIG_DIGEST_FILE)
    for env in ({"WS_ROOT": str(elsewhere / "repos")}, {"WS_ROOT": str(tmp_path / "none")}):
        code, cached, validated = _status(moved, env=env)
        assert code == 0 and not validated
        (elsewhere / defaults.CONFIG_DIGEST_FILE).rename(tmp_path / "aside")
        assert _status(moved, env=env)[2]  # the same run, validated: the same rows
        (tmp_path / "aside").rename(elsewhere / defaults.CONFIG_DIGEST_FILE)
        code, fresh, _ = _status(moved, env=env)
        assert _rows(cached) == _rows(fresh)
        assert [row["path"] for row in json.loads(cached)["projects"]] == [
            f"{env['WS_ROOT']}/{name}" for name in ("core", "api", "web", "tools")
        ]


@pytest.mark.parametrize(
    "extra",
    [
        'broker_url: "redis://:hunter2-secret@127.0.0.1:6379/0"\n',
        "notify:\n  - {url: 'https://hooks.example.com/services/T0/B0/secret'}\n",
    ],
)
def test_a_file_with_secret_values_is_never_recorded(workspace: Workspace, extra: str) -> None:
    workspace.config_path.write_text(workspace.config_path.read_text() + extra)
    assert _status(workspace.config_path)[0] == 0
    assert not _digest(workspace).exists()
    assert _status(workspace.config_path)[2]  # validated again


def test_secret_names_stay_out_of_git_in_both_runs(workspace: Workspace, tmp_path: Path) -> None:
    real = shutil.which("git")
    shim = tmp_path / "shim"
    shim.mkdir()
    log = tmp_path / "env.log"
    (shim / "git").write_text(f'#!/bin/sh\nenv >> {log}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    workspace.config_path.write_text(
        workspace.config_path.read_text()
        + "models:\n  m: {endpoint: 'http://127.0.0.1:9/v1', model: x, tier: local,"
        " api_key_env: MY_MODEL_TOKEN}\n"
    )
    env = {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "MY_MODEL_TOKEN": "tok-1234567890"}
    assert _status(workspace.config_path, env=env)[:1] == (0,)
    code, _, validated = _status(workspace.config_path, env=env)
    assert code == 0 and not validated
    text = log.read_text()
    assert "PATH=" in text and "MY_MODEL_TOKEN" not in text


def test_other_code_or_a_broken_digest_is_a_miss(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_mod.load(workspace.config_path)
    status_config.remember(cfg)
    known = status_config.lookup(workspace.config_path)
    assert known == status_config.StatusConfig.of(cfg)
    monkeypatch.setattr(status_config, "code_fingerprint", lambda: "other code")
    assert status_config.lookup(workspace.config_path) is None
    monkeypatch.undo()
    for broken in ("{", '{"version": 1, "entries": []}', '{"version": 1, "entries": {"x": 1}}'):
        _digest(workspace).write_text(broken)
        assert status_config.lookup(workspace.config_path) is None
    entries = {cfg.digest: {"code": status_config.code_fingerprint(), "projects": 7}}
    _digest(workspace).write_text(json.dumps({"version": 1, "entries": entries}))
    assert status_config.lookup(workspace.config_path) is None


def test_one_digest_per_file_kept_and_none_when_unwritable(
    workspace: Workspace, tmp_path: Path
) -> None:
    text = workspace.config_path.read_text()
    others = []
    for n in range(9):
        other = workspace.config_path.with_name(f"other{n}.yml")
        other.write_text(f"{text}# file {n}\n")
        status_config.remember(config_mod.load(other))
        others.append(other)
    assert status_config.lookup(others[0]) is None  # the oldest of nine
    assert all(status_config.lookup(other) is not None for other in others[1:])
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(workspace.config_path, locked / "overlord.yml")
    locked.chmod(0o500)
    try:
        status_config.remember(config_mod.load(locked / "overlord.yml"))  # no error
        if os.geteuid() != 0:  # root writes anyway
            assert not (locked / defaults.CONFIG_DIGEST_FILE).exists()
    finally:
        locked.chmod(0o700)
