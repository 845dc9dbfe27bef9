"""Cross-project memory on SQLite and PostgreSQL, and the ``overlord memory`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overlord import memory
from overlord.adapters.sql import db
from overlord.cli.app import main
from overlord.errors import OverlordError
from overlord.memory import Category, Memory
from tests.integration.test_db import state_url  # noqa: F401 - fixture, parametrised over both backends

PUNCTUATION = [
    'a"b OR (',
    '"',
    "(",
    ")",
    "*",
    "NEAR(",
    "AND",
    "OR NOT",
    "100%",
    "%",
    "_",
    "'; DROP TABLE memories; --",
    "col:umn",
    "^start",
    "-minus",
    "{x}",
    "\\",
    "ümlaut",
]


@pytest.fixture
def seeded(state_url: str) -> str:  # noqa: F811
    memory.remember(state_url, "release", "Released core v0.2.0 to PyPI", project="core")
    memory.remember(state_url, Category.FAILURE, "Tests failed in app: ImportError", project="app")
    memory.remember(state_url, "decision", "Use the develop-main branch model everywhere")
    memory.remember(state_url, "update", "Updated core pin in app to 0.2.0", project="app")
    return state_url


def ids(found: list[Memory]) -> list[str]:
    return [m.content.split()[0] for m in found]


def test_remember_returns_the_stored_entry(state_url: str) -> None:  # noqa: F811
    entry = memory.remember(
        state_url, "Release", "  core 1.0  ", project="core", metadata={"version": "1.0"}
    )
    assert entry.category is Category.RELEASE
    assert entry.content == "core 1.0"
    assert entry.created_at.utcoffset() is not None
    (found,) = memory.search(state_url)
    assert found == entry
    assert found.metadata == {"version": "1.0"}


def test_empty_text_lists_newest_first(seeded: str) -> None:
    assert ids(memory.search(seeded)) == ["Updated", "Use", "Tests", "Released"]
    assert ids(memory.search(seeded, limit=2)) == ["Updated", "Use"]


def test_search_by_word(seeded: str) -> None:
    assert ids(memory.search(seeded, "importerror")) == ["Tests"]
    assert ids(memory.search(seeded, "core")) == ["Updated", "Released"]
    assert ids(memory.search(seeded, "core pypi")) == ["Released"]
    assert ids(memory.search(seeded, "v0.2.0")) == ["Released"]
    assert ids(memory.search(seeded, "develop-main")) == ["Use"]
    assert memory.search(seeded, "nothing-like-this") == []


def test_search_by_word_prefix(seeded: str) -> None:
    assert ids(memory.search(seeded, "relea")) == ["Released"]


def test_search_by_project(seeded: str) -> None:
    assert ids(memory.search(seeded, project="app")) == ["Updated", "Tests"]
    assert ids(memory.search(seeded, "core", project="app")) == ["Updated"]
    assert memory.search(seeded, project="nobody") == []


def test_search_by_category(seeded: str) -> None:
    assert ids(memory.search(seeded, category="failure")) == ["Tests"]
    assert ids(memory.search(seeded, "core", category=Category.RELEASE)) == ["Released"]
    assert memory.search(seeded, "core", category="decision") == []


@pytest.mark.parametrize("text", PUNCTUATION)
def test_punctuation_heavy_text_does_not_crash(state_url: str, text: str) -> None:  # noqa: F811
    entry = memory.remember(state_url, "pattern", f"odd input {text} here")
    memory.remember(state_url, "pattern", "something else entirely")
    found = memory.search(state_url, text)
    assert found == [entry]


def test_like_wildcards_are_literal(state_url: str) -> None:  # noqa: F811
    memory.remember(state_url, "pattern", "coverage is 100% now")
    memory.remember(state_url, "pattern", "coverage is 1000 lines")
    assert ids(memory.search(state_url, "100%")) == ["coverage"]
    assert len(memory.search(state_url, "%")) == 1


def test_unknown_category_is_refused_with_the_list(state_url: str) -> None:  # noqa: F811
    with pytest.raises(OverlordError) as info:
        memory.remember(state_url, "gossip", "x")
    assert info.value.exit_code == 2
    assert "release, dispatch, failure, decision, update, pattern" in info.value.message
    with pytest.raises(OverlordError):
        memory.search(state_url, category="gossip")


def test_empty_content_is_refused(state_url: str) -> None:  # noqa: F811
    with pytest.raises(OverlordError):
        memory.remember(state_url, "decision", "   ")


def test_search_without_fts_falls_back_to_like(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nofts.db'}"
    engine = db.engine_for(url)
    try:
        db.ensure_schema(engine)
        db._fts[engine] = False  # as on a SQLite built without FTS5
        memory.remember(url, "release", "Released core v0.2.0")
        assert ids(memory.search(url, "RELEASED core")) == ["Released"]
        assert memory.search(url, 'a"b OR (') == []
    finally:
        db.dispose(url)


# --- the command line ---------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("OVERLORD_CONFIG", raising=False)
    project = tmp_path / "nebulus-core"
    project.mkdir()
    (tmp_path / "nebulus-app").mkdir()
    path = tmp_path / "overlord.yml"
    path.write_text(
        "projects:\n"
        f"  nebulus-core: {{path: {project}}}\n"
        f"  nebulus-app: {{path: {tmp_path / 'nebulus-app'}}}\n"
        f"state_url: sqlite:///{tmp_path / 's.db'}\n"
    )
    yield path
    db.dispose(f"sqlite:///{tmp_path / 's.db'}")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_add_then_search_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ("--config", str(config_file))
    rc, out, err = run(
        capsys, "memory", "add", "decision", "Pin [bold]core[/] exactly", "--project", "Core", *cfg
    )
    assert rc == 0, err
    rc, _, err = run(capsys, "memory", "add", "release", "app 1.0 out", "-p", "app", *cfg)
    assert rc == 0, err
    rc, out, err = run(capsys, "memory", "search", "core", "--project", "CORE", "--json", *cfg)
    assert rc == 0, err
    document = json.loads(out)
    (entry,) = document["memories"]
    assert entry["project"] == "nebulus-core"
    assert entry["category"] == "decision"
    assert entry["content"] == "Pin [bold]core[/] exactly"
    rc, out, _ = run(capsys, "memory", "search", "--category", "release", "--json", *cfg)
    assert [m["project"] for m in json.loads(out)["memories"]] == ["nebulus-app"]


def test_cli_search_table(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ("--config", str(config_file))
    assert (
        run(capsys, "memory", "add", "failure", "tests [red]broke[/]", "-p", "core", *cfg)[0] == 0
    )
    rc, out, _ = run(capsys, "memory", "search", "broke", *cfg)
    assert rc == 0
    assert "tests [red]broke[/]" in out
    assert "nebulus-core" in out
    rc, out, _ = run(capsys, "memory", "search", "zzz", *cfg)
    assert rc == 0
    assert "no memories" in out


def test_cli_punctuation_search(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(
        capsys, "memory", "search", 'a"b OR (', "--json", "--config", str(config_file)
    )
    assert rc == 0, err
    assert json.loads(out) == {"memories": []}


@pytest.mark.parametrize(
    "argv",
    [
        ["memory", "search", "x", "--category", "gossip"],
        ["memory", "add", "gossip", "some text"],
        ["memory", "search", "x", "--project", "nothing"],
        ["memory", "search", "x", "--limit", "0"],
    ],
)
def test_cli_bad_input_exits_2_without_traceback(
    config_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    rc, out, err = run(capsys, *argv, "--config", str(config_file))
    assert rc == 2
    assert "Traceback" not in out + err
    if "gossip" in argv:
        assert "release, dispatch, failure, decision, update, pattern" in err


def test_cli_unreachable_database_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "overlord.yml"
    path.write_text("state_url: postgresql://me:hunter2@127.0.0.1:1/state\n")
    rc, out, err = run(capsys, "memory", "search", "x", "--config", str(path))
    db.dispose("postgresql://me:hunter2@127.0.0.1:1/state")
    assert rc == 2
    assert "hunter2" not in out + err
    assert "Traceback" not in out + err
    assert "cannot connect" in err
