"""A plain ``overlord status`` runs past typer (``cli.entry``): the same output, errors and
exit codes as the typer command, without loading typer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from overlord.cli.app import main
from tests.kit import Workspace, entry_loaded, run_entry

ROOT = Path(__file__).resolve().parents[2]


def _entry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_entry(*args, env=env)


def _no_ages(doc: dict) -> dict:  # type: ignore[type-arg]
    for row in doc["projects"]:
        for branch in row["stale_branches"] + row["old_unmerged"]:
            branch.pop("age_days")
    return doc


def test_json_equals_the_typer_command(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(workspace.config_path)
    proc = _entry("status", "--json", "--config", config)
    assert proc.returncode == 0, proc.stderr
    assert entry_loaded(proc) == ["pydantic"]  # validated: no digest of the file yet
    assert main(["status", "--json", "--config", config]) == 0
    assert _no_ages(json.loads(proc.stdout)) == _no_ages(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize(
    "args",
    [
        ("--config", "{c}", "status", "--json"),
        ("-c", "{c}", "status", "--json"),
        ("status", "--json", "--config={c}"),
        ("status", "--json"),  # $OVERLORD_CONFIG
    ],
)
def test_config_options_as_typer_reads_them(workspace: Workspace, args: tuple[str, ...]) -> None:
    config = str(workspace.config_path)
    proc = _entry(*(a.format(c=config) for a in args), env={"OVERLORD_CONFIG": config})
    assert proc.returncode == 0, proc.stderr
    assert "'typer'" not in proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)["projects"]] == [
        "core",
        "api",
        "web",
        "tools",
    ]


def test_table_and_errors(workspace: Workspace, tmp_path: Path) -> None:
    table = _entry("status", "--config", str(workspace.config_path))
    assert table.returncode == 0, table.stderr
    assert "core" in table.stdout and "clean" in table.stdout
    missing = _entry("status", "--json", "--config", str(tmp_path / "none.yml"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error:") and "no configuration file" in missing.stderr


def test_other_command_lines_go_to_typer(workspace: Workspace) -> None:
    config = str(workspace.config_path)
    named = _entry("status", "core", "--json", "--config", config)
    assert named.returncode == 0 and "'typer'" in named.stderr
    assert [r["name"] for r in json.loads(named.stdout)["projects"]] == ["core"]
    usage = _entry("status", "--jsn", "--config", config)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
