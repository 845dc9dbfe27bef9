"""Text from repositories, tests and the state database reaches the terminal without
control characters: shown escaped (SPEC §4.6)."""

from __future__ import annotations

import sys

from overlord.core.terminal import clean
from tests.dispatch_helpers import cli, configure, run_overlord
from tests.kit import Workspace, add_commit

NASTY = "\x1b[1A\x1b[2K\x1b]0;owned\x07\x9b31m\u202e"


def test_clean_escapes_controls_and_keeps_lines() -> None:
    assert clean("plain\ttext\nnext") == "plain\ttext\nnext"
    assert clean("a\r\nb") == "a\nb"
    assert clean("x\x1b[2Jy\rz\x00\x7f\x85") == "x\\x1b[2Jy\\x0dz\\x00\\x7f\\x85"
    assert clean("\u202eevil") == "\\u202eevil"


def test_commit_subject_in_status_is_escaped(synced_workspace: Workspace) -> None:
    core = synced_workspace.repos["core"]
    add_commit(core, "note.txt", "x\n", f"innocent{NASTY}subject")
    proc = run_overlord(synced_workspace.config_path, "status")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x9b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "\\x1b" in proc.stdout


def test_test_output_and_errors_are_escaped(synced_workspace: Workspace) -> None:
    script = synced_workspace.root / "loud.py"
    script.write_text(f"print({NASTY!r} + 'approve me'); raise SystemExit(1)\n")
    configure(
        synced_workspace,
        projects={"core": {"test_command": f"{sys.executable} {script}"}},
        autonomy={"global": "proactive"},
    )
    res = cli(synced_workspace.config_path, "dispatch", "run tests in core")
    assert res.code == 1, res.text
    assert "approve me" in res.out
    for char in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert char not in res.out and char not in res.err
    plan_id = res.out.split()[1].rstrip(":")
    shown = cli(synced_workspace.config_path, "plans", "show", plan_id)
    assert "approve me" in shown.out and "\x1b" not in shown.out
