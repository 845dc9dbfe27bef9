"""Comment- and layout-preserving edits of the configuration file (overlord.config_edit)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from overlord import config_edit
from overlord.config_edit import ConfigDocument
from overlord.core.config import ActionKind, Level, load
from overlord.errors import ConfigError

RICH = """\
# Overlord configuration — hand written, keep my comments!
workspace: {ws}                 # optional root

state_url: sqlite:///{ws}/overlord.db
projects:
  core:
    path: core
    remote: origin                    # git remote name or owner/repo
    role: shared-library              # shared-library | application
    depends_on: []

  app:
    path: app
    depends_on: [core]
    test_command: "python -m pytest -q"   # quoted on purpose
autonomy:
  global: proactive                   # cautious | proactive | scheduled
  overrides: {{core: cautious}}
  pre_approved:                       # action kinds, not free text
    app: [run-tests, clean-stale-branches, update-dependency]

models:
  local-14b:  {{endpoint: http://127.0.0.1:5000/v1, model: qwen2.5-coder-14b, tier: local, concurrent: 2}}
  cloud-fast: {{endpoint: https://api.anthropic.com/v1, model: claude-haiku-4-5, tier: cloud-fast, concurrent: 10, api_key_env: ANTHROPIC_API_KEY}}
dispatch:
  max_concurrent_steps: 5
  stale_branch_days: 30   # days
schedule:                             # Celery beat entries (cron syntax)
  nightly-tests: {{cron: "0 2 * * *", task: 'run tests across all projects'}}
# end of file
"""


@pytest.fixture
def rich_config(tmp_path: Path) -> Path:
    path = tmp_path / "overlord.yml"
    path.write_text(RICH.format(ws=tmp_path))
    return path


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(lines only in before, lines only in after), in order, assuming a line-level edit."""
    import difflib

    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def test_set_global_level_changes_only_that_line(rich_config: Path) -> None:
    before = rich_config.read_text()
    config = config_edit.set_global_level(rich_config, "scheduled")
    after = rich_config.read_text()
    assert config.autonomy.global_ is Level.SCHEDULED
    assert load(rich_config).autonomy.global_ is Level.SCHEDULED
    assert after == before.replace(
        "  global: proactive                   #", "  global: scheduled                   #"
    )


def test_set_project_level_adds_to_flow_overrides(rich_config: Path) -> None:
    before = rich_config.read_text()
    config_edit.set_project_level(rich_config, "app", Level.SCHEDULED)
    after = rich_config.read_text()
    assert changed_lines(before, after) == (
        ["  overrides: {core: cautious}"],
        ["  overrides: {core: cautious, app: scheduled}"],
    )
    assert load(rich_config).autonomy.overrides == {"core": Level.CAUTIOUS, "app": Level.SCHEDULED}


def test_set_project_level_replaces_existing_override(rich_config: Path) -> None:
    config_edit.set_project_level(rich_config, "core", "proactive")
    assert load(rich_config).autonomy.overrides == {"core": Level.PROACTIVE}


def test_approve_appends_without_duplicates(rich_config: Path) -> None:
    before = rich_config.read_text()
    config_edit.approve(rich_config, "app", "merge")
    config_edit.approve(rich_config, "app", ActionKind.MERGE)  # again: no duplicate
    after = rich_config.read_text()
    assert changed_lines(before, after) == (
        ["    app: [run-tests, clean-stale-branches, update-dependency]"],
        ["    app: [run-tests, clean-stale-branches, update-dependency, merge]"],
    )


def test_approve_new_project_creates_its_list(rich_config: Path) -> None:
    before = rich_config.read_text()
    config = config_edit.approve(rich_config, "core", "run-tests")
    assert config.autonomy.pre_approved["core"] == [ActionKind.RUN_TESTS]
    removed, added = changed_lines(before, rich_config.read_text())
    assert removed == [] and added == ["    core: [run-tests]"]


def test_revoke_removes_only_that_kind(rich_config: Path) -> None:
    before = rich_config.read_text()
    config_edit.revoke(rich_config, "app", "clean-stale-branches")
    after = rich_config.read_text()
    assert changed_lines(before, after) == (
        ["    app: [run-tests, clean-stale-branches, update-dependency]"],
        ["    app: [run-tests, update-dependency]"],
    )


def test_revoke_missing_kind_is_one_line_error_and_file_untouched(rich_config: Path) -> None:
    before = rich_config.read_bytes()
    with pytest.raises(ConfigError) as info:
        config_edit.revoke(rich_config, "app", "merge")
    assert "\n" not in str(info.value)
    assert "merge is not pre-approved for app" in info.value.message
    with pytest.raises(ConfigError):
        config_edit.revoke(rich_config, "core", "run-tests")  # core has no list at all
    with pytest.raises(ConfigError, match="unknown action kind"):
        config_edit.revoke(rich_config, "app", "dance")
    assert rich_config.read_bytes() == before


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: config_edit.set_global_level(p, "reckless"), "unknown autonomy level"),
        (lambda p: config_edit.set_project_level(p, "ghost", "cautious"), "unknown project"),
        (lambda p: config_edit.approve(p, "ghost", "merge"), "unknown project"),
        (lambda p: config_edit.approve(p, "app", "push"), "push cannot be pre-approved"),
        (lambda p: config_edit.approve(p, "app", "fly"), "unknown action kind"),
    ],
)
def test_bad_edit_never_lands(rich_config: Path, call, match: str) -> None:  # type: ignore[no-untyped-def]
    before = rich_config.read_bytes()
    with pytest.raises(ConfigError, match=match) as info:
        call(rich_config)
    assert "\n" not in str(info.value)
    assert rich_config.read_bytes() == before
    assert sorted(p.name for p in rich_config.parent.iterdir()) == ["overlord.yml"]


def test_several_edits_in_one_document(rich_config: Path) -> None:
    before = rich_config.read_text()
    doc = ConfigDocument.load(rich_config)
    doc.set_global_level("scheduled")
    doc.set_project_level("core", "proactive")
    doc.approve("app", "merge")
    doc.revoke("app", "run-tests")
    config = doc.save()
    assert config.autonomy.global_ is Level.SCHEDULED
    assert config.autonomy.pre_approved["app"] == [
        ActionKind.CLEAN_STALE_BRANCHES,
        ActionKind.UPDATE_DEPENDENCY,
        ActionKind.MERGE,
    ]
    removed, added = changed_lines(before, rich_config.read_text())
    assert len(removed) == len(added) == 3
    assert all(line.startswith(("  global:", "  overrides:", "    app:")) for line in added)


MINIMAL = """\
# just projects
projects:
  core:
    path: {tmp}   # the library

  app:
    path: {tmp}
    depends_on: [core]

# trailing comment
"""


def test_missing_sections_are_created(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    before = MINIMAL.format(tmp=tmp_path)
    path.write_text(before)
    config_edit.set_project_level(path, "core", "cautious")
    config_edit.approve(path, "app", "run-tests")
    config_edit.set_global_level(path, "scheduled")
    after = path.read_text()
    config = load(path)
    assert config.autonomy.global_ is Level.SCHEDULED
    assert config.autonomy.overrides == {"core": Level.CAUTIOUS}
    assert config.autonomy.pre_approved == {"app": [ActionKind.RUN_TESTS]}
    removed, added = changed_lines(before, after)
    assert removed == []
    assert added[0] == "autonomy:"
    assert "# the library" in after and after.endswith("# trailing comment\n")
    assert after.startswith(before.split("\n\n# trailing")[0])


def test_four_space_indent_and_block_lists_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    before = (
        "projects:\n"
        f"    core:\n        path: {tmp_path}\n"
        "autonomy:\n"
        "    global: scheduled\n"
        "    pre_approved:\n"
        "        core:\n"
        "            - run-tests   # nightly\n"
    )
    path.write_text(before)
    config_edit.approve(path, "core", "merge")
    assert path.read_text() == before + "            - merge\n"


def test_crlf_and_mode_and_symlink_preserved(tmp_path: Path) -> None:
    real = tmp_path / "real.yml"
    real.write_bytes(MINIMAL.format(tmp=tmp_path).replace("\n", "\r\n").encode())
    os.chmod(real, 0o600)
    link = tmp_path / "link.yml"
    link.symlink_to(real)
    config_edit.set_global_level(link, "cautious")
    assert link.is_symlink()
    data = real.read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert b"global: cautious" in data
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


def test_unusual_flow_spacing_still_edits_correctly(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(
        f"projects: {{ core: {{ path: {tmp_path} }} }}   # one line\n"
        "autonomy: { global: proactive, overrides: { core: cautious } }  # flow\n"
    )
    config_edit.set_project_level(path, "core", "scheduled")
    config = load(path)
    assert config.autonomy.overrides == {"core": Level.SCHEDULED}
    assert "# one line" in path.read_text() and "# flow" in path.read_text()


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no configuration file"):
        config_edit.set_global_level(tmp_path / "nope.yml", "cautious")


def test_clear_project_level(rich_config: Path) -> None:
    config = config_edit.clear_project_level(rich_config, "core")
    assert config.autonomy.overrides == {}
    with pytest.raises(ConfigError):
        config_edit.clear_project_level(rich_config, "core")
