"""Which command lines ``prefetch.begin`` starts git reads for (none but plain ``status``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlord.adapters.git.prefetch import plain_status
from overlord.core.config_file import config_path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], "ENV"),
        (["status", "--json"], "ENV"),
        (["status", "--json", "--config", "/a.yml"], "/a.yml"),
        (["status", "-c", "/a.yml", "--json"], "/a.yml"),
        (["status", "--config=/a.yml"], "/a.yml"),
        (["--config", "/g.yml", "status", "--json"], "/g.yml"),
        (["-c", "/g.yml", "status", "--config", "/a.yml"], "/a.yml"),
        (["status", "core"], None),
        (["status", "--fetch"], None),
        (["status", "--help"], None),
        (["status", "--config"], None),
        (["status", "status"], None),
        (["plans", "--json"], None),
        (["--json", "status"], None),
        ([], None),
        (["--config", "/g.yml"], None),
    ],
)
def test_only_plain_status(
    argv: list[str], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVERLORD_CONFIG", "/env.yml")
    plain = plain_status(argv)
    if expected is None:
        assert plain is None
        return
    assert plain is not None and plain.json == ("--json" in argv)
    if plain.group:  # as the option before the command does
        monkeypatch.setenv("OVERLORD_CONFIG", plain.group)
    assert config_path(plain.command) == Path("/env.yml" if expected == "ENV" else expected)
