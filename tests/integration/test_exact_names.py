"""Git inputs resolved exactly (SPEC §4.6): the caller's GIT_* variables never redirect
git, branch names are branches (never a tag or an expression), version files stay inside
the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from overlord.adapters.git.git import Git
from overlord.adapters.git.refs import check_branch
from overlord.core import metadata
from overlord.errors import BadRefName, MetadataError
from tests.dispatch_helpers import cli, configure, run_overlord
from tests.kit import Workspace, add_commit, git, workspace_snapshot


@pytest.fixture
def ws(synced_workspace: Workspace) -> Workspace:
    configure(synced_workspace, autonomy={"global": "proactive"})
    return synced_workspace


def test_status_ignores_the_callers_git_dir(ws: Workspace, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", "-b", "main", str(other))
    stranger = add_commit(other, "x.txt", "x\n", "Someone else's commit")
    variables = {
        "GIT_DIR": str(other / ".git"),
        "GIT_WORK_TREE": str(other),
        "GIT_INDEX_FILE": str(other / ".git" / "index"),
        "GIT_OBJECT_DIRECTORY": str(other / ".git" / "objects"),
        "GIT_COMMON_DIR": str(other / ".git"),
        "GIT_CEILING_DIRECTORIES": str(tmp_path),
    }
    old = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        proc = run_overlord(ws.config_path, "status", "--json")
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)["projects"]}
    for name, repo in ws.repos.items():
        own = git(repo, "rev-parse", "HEAD")
        assert rows[name]["last_commit"]["sha"] == own != stranger, name


@pytest.mark.parametrize("task", ["merge develop to main~0 in core", "merge -x to main in core"])
def test_revision_expressions_are_refused_as_branches(ws: Workspace, task: str) -> None:
    core = ws.repos["core"]
    git(core, "update-ref", "refs/heads/-x", "refs/heads/develop")  # exists, but no name
    before = workspace_snapshot(ws)
    res = cli(ws.config_path, "dispatch", task, "--yes")
    assert res.code == 2, res.text
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not a branch name" in errors[0]
    assert "Traceback" not in res.text
    assert workspace_snapshot(ws) == before
    assert git(core, "symbolic-ref", "HEAD") == "refs/heads/develop"


def test_a_tag_named_like_the_branch_does_not_stand_in_for_it(ws: Workspace) -> None:
    core = ws.repos["core"]
    main_tip = git(core, "rev-parse", "refs/heads/main")
    git(core, "tag", "main", "refs/heads/develop~1")  # a tag `main` elsewhere
    assert git(core, "rev-parse", "refs/tags/main") != main_tip
    res = cli(ws.config_path, "dispatch", "tag core 0.9.5", "--yes")
    assert res.code == 0, res.text
    assert git(core, "rev-parse", "refs/tags/v0.9.5^{commit}") == main_tip


def test_merge_into_main_with_a_tag_main_moves_branch_main(ws: Workspace) -> None:
    core = ws.repos["core"]
    old_main = git(core, "rev-parse", "refs/heads/main")
    git(core, "tag", "develop", old_main)  # a tag `develop` at main: merging it is a no-op
    res = cli(ws.config_path, "dispatch", "merge develop to main in core", "--yes")
    assert res.code == 0, res.text
    parents = git(core, "rev-list", "--parents", "-n1", "refs/heads/main").split()[1:]
    assert parents == [old_main, git(core, "rev-parse", "refs/heads/develop")]


def test_branch_names_checked_by_git() -> None:
    for good in ("main", "feature/x", "release-1.2"):
        assert check_branch(good) == good
    for bad in ("main~0", "-x", "HEAD", "@{-1}", "a..b", "main^{}", "@", "", "x y"):
        with pytest.raises(BadRefName):
            check_branch(bad)


def test_checkout_takes_the_branch_over_a_tag(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    first = add_commit(repo, "a", "1\n", "one")
    git(repo, "tag", "dev", first)
    git(repo, "checkout", "-q", "-b", "dev")
    add_commit(repo, "a", "2\n", "two")
    git(repo, "checkout", "-q", "main")
    Git(repo).checkout("dev")
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/dev"


def _hatch_repo(tmp_path: Path, version_path: str) -> Path:
    repo = tmp_path / "lib"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    pyproject = (
        '[project]\nname = "lib"\ndynamic = ["version"]\n'
        f'[tool.hatch.version]\npath = "{version_path}"\n'
    )
    add_commit(repo, "pyproject.toml", pyproject, "packaging")
    return repo


def test_hatch_version_path_outside_the_repository_is_not_written(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text('__version__ = "0.1.0"\n')
    repo = _hatch_repo(tmp_path, "../outside.py")
    with pytest.raises(MetadataError, match="outside the repository"):
        metadata.set_version(repo, "0.2.0")
    assert outside.read_text() == '__version__ = "0.1.0"\n'


def test_version_file_symlinked_outside_is_not_written(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text('__version__ = "0.1.0"\n')
    repo = _hatch_repo(tmp_path, "lib/_version.py")
    (repo / "lib").mkdir()
    (repo / "lib" / "_version.py").symlink_to(outside)
    with pytest.raises(MetadataError, match="outside the repository"):
        metadata.set_version(repo, "0.2.0")
    assert outside.read_text() == '__version__ = "0.1.0"\n'


def test_hatch_version_path_inside_is_written(tmp_path: Path) -> None:
    repo = _hatch_repo(tmp_path, "lib/_version.py")
    add_commit(repo, "lib/_version.py", '__version__ = "0.1.0"\n', "version")
    assert metadata.set_version(repo, "0.2.0") == [repo / "lib" / "_version.py"]
    assert '"0.2.0"' in (repo / "lib" / "_version.py").read_text()
