"""The git adapter against real repositories in tmp dirs (HOME isolated by conftest)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from overlord.adapters.git import head_file
from overlord.adapters.git.checkout import head_name
from overlord.adapters.git.git import Git
from overlord.errors import GitError, RepoNotFound
from tests.kit import add_commit, days_ago, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(path))
    add_commit(path, "README.md", "hello\n", "Initial commit")
    return path


@pytest.fixture
def cloned(tmp_path: Path, repo: Path) -> tuple[Path, Path]:
    """(working clone, its bare origin); the clone tracks origin/main."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    return clone, bare


def test_run_returns_stdout_without_trailing_newline(repo: Path) -> None:
    g = Git(repo)
    assert g.run("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert g.ok("rev-parse", "HEAD")
    assert not g.ok("rev-parse", "--verify", "nope")


def test_failure_is_one_line_with_command_and_stderr(repo: Path) -> None:
    with pytest.raises(GitError) as info:
        Git(repo).run("checkout", "no-such-branch")
    err = info.value
    assert "\n" not in err.message
    assert "git checkout no-such-branch" in err.message
    assert "did not match" in err.message
    assert "no-such-branch" in err.stderr
    assert not isinstance(err, RepoNotFound)


def test_check_false_returns_output(repo: Path) -> None:
    assert Git(repo).run("rev-parse", "--verify", "-q", "nope", check=False) == ""


def test_missing_path_is_repo_not_found(tmp_path: Path) -> None:
    g = Git(tmp_path / "missing")
    assert not g.is_repo()
    with pytest.raises(RepoNotFound, match="no such directory"):
        g.head()


def test_plain_directory_inside_a_repo_is_not_a_repo(repo: Path) -> None:
    inner = repo / "sub"
    inner.mkdir()
    g = Git(inner)
    assert not g.is_repo()
    with pytest.raises(RepoNotFound, match="not a git repository"):
        g.run("status")


def test_timeout_stops_git_and_says_so(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nsleep 30\n")
    hook.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(GitError, match="timed out"):
        Git(repo, timeout=0.5).run("commit", "--allow-empty", "-m", "x")
    assert time.monotonic() - started < 10


def test_env_and_input_are_passed(repo: Path) -> None:
    sha = Git(repo).run("hash-object", "--stdin", input="hello\n")
    assert sha == git(repo, "hash-object", "README.md")
    out = Git(repo).run("var", "GIT_AUTHOR_IDENT", env={"GIT_AUTHOR_NAME": "Somebody"})
    assert out.startswith("Somebody ")


def test_heads_revs_and_refs(repo: Path) -> None:
    g = Git(repo)
    assert g.is_repo()
    assert g.git_dir() == (repo / ".git").resolve()
    head = g.head()
    assert g.current_branch() == "main"
    assert g.rev("main") == head
    assert g.rev("missing") is None
    g.tag_annotated("v1", "Release 1")
    assert g.tag_exists("v1") and not g.tag_exists("v2")
    assert g.rev("v1") == head
    target = g.ref_target("refs/tags/v1")
    assert target is not None and target != head
    assert g.ref_target("refs/tags/nope") is None
    assert g.tags() == {"v1": head}
    git(repo, "checkout", "-q", "--detach", "HEAD")
    assert g.current_branch() is None


def test_branch_lifecycle(repo: Path) -> None:
    g = Git(repo)
    first = g.head()
    g.create_branch("feature/x", "main")
    assert g.branch_exists("feature/x") and not g.branch_exists("feature/y")
    g.checkout("feature/x")
    second = add_commit(repo, "x.txt", "x\n", "Add x")
    assert g.branches() == {"main": first, "feature/x": second}
    g.update_ref("refs/heads/main", second)
    assert g.rev("main") == second
    g.reset_hard(first)
    assert g.head() == first
    g.checkout("main")
    g.delete_branch("feature/x")
    assert not g.branch_exists("feature/x")


def test_branch_tips_dates_and_merged(repo: Path) -> None:
    g = Git(repo)
    git(repo, "switch", "-q", "-c", "old")
    add_commit(repo, "old.txt", "o\n", "Old work", date=days_ago(40))
    git(repo, "switch", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge old", "old")
    git(repo, "switch", "-q", "-c", "open", "main~1")
    add_commit(repo, "open.txt", "o\n", "Open work")
    git(repo, "switch", "-q", "main")
    tips = g.branch_tips()
    assert set(tips) == {"main", "old", "open"}
    assert (tips["main"][1] - tips["old"][1]).days >= 39
    assert tips["old"][0] == g.rev("old")
    assert sorted(g.merged_into("main")) == ["main", "old"]
    assert sorted(g.merged_into("main", "open")) == ["main", "old", "open"]


def test_recent_tags_newest_first(repo: Path) -> None:
    g = Git(repo)
    for n, age in ((1, 30), (2, 20), (3, 10), (4, 5)):
        add_commit(repo, "f.txt", f"{n}\n", f"Commit {n}", date=days_ago(age))
        git(repo, "tag", f"v{n}")  # lightweight: creator date is the commit's date
    assert [t["name"] for t in g.recent_tags()] == ["v4", "v3", "v2"]
    assert [t["name"] for t in g.recent_tags(1)] == ["v4"]


def test_last_commit(repo: Path) -> None:
    sha = add_commit(repo, "a.txt", "a\n", "Add a: with colon", date=days_ago(3))
    info = Git(repo).last_commit()
    assert info["sha"] == sha
    assert info["subject"] == "Add a: with colon"
    assert info["date"].startswith(time.strftime("%Y", time.gmtime(time.time() - 3 * 86400)))


def test_status_counts_and_dirty(repo: Path) -> None:
    g = Git(repo)
    assert not g.is_dirty()
    assert g.status_counts() == {"staged": 0, "modified": 0, "untracked": 0, "conflicted": 0}
    (repo / "new.txt").write_text("n\n")
    assert g.is_dirty()
    (repo / "README.md").write_text("changed\n")
    (repo / "staged.txt").write_text("s\n")
    git(repo, "add", "staged.txt")
    assert g.status_counts() == {"staged": 1, "modified": 1, "untracked": 1, "conflicted": 0}


def _conflict(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "other")
    add_commit(repo, "README.md", "other\n", "Other side")
    git(repo, "switch", "-q", "main")
    add_commit(repo, "README.md", "main\n", "Main side")


def test_operation_in_progress_during_a_conflicted_merge(repo: Path) -> None:
    _conflict(repo)
    g = Git(repo)
    assert g.operation_in_progress() is None
    git(repo, "merge", "other", check=False)
    assert g.operation_in_progress() == "merge"
    assert g.status_counts()["conflicted"] == 1


def test_merge_no_ff_conflict_is_aborted(repo: Path) -> None:
    _conflict(repo)
    g = Git(repo)
    before = g.head()
    with pytest.raises(GitError, match="conflict") as info:
        g.merge_no_ff("other", "Merge other")
    assert "merge aborted" in info.value.message
    assert g.head() == before
    assert g.operation_in_progress() is None
    assert not g.is_dirty()


def test_merge_no_ff_creates_a_merge_commit(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "feature")
    add_commit(repo, "f.txt", "f\n", "Feature")
    git(repo, "switch", "-q", "main")
    g = Git(repo)
    new = g.merge_no_ff("feature", "Merge feature")
    assert new == g.head()
    assert len(g.run("rev-list", "--parents", "-n1", "HEAD").split()) == 3
    assert g.last_commit()["subject"] == "Merge feature"


def test_commit_paths_and_tags(repo: Path) -> None:
    g = Git(repo)
    (repo / "a.txt").write_text("a\n")
    (repo / "b.txt").write_text("b\n")
    sha = g.commit_paths(["a.txt"], "Add a")
    assert sha == g.head()
    assert g.run("show", "--name-only", "--format=", "HEAD") == "a.txt"
    assert g.status_counts()["untracked"] == 1
    g.tag_annotated("v2", "Release 2", ref=sha)
    g.delete_tag("v2")
    assert not g.tag_exists("v2")


def test_remotes_upstream_and_ahead_behind(tmp_path: Path, cloned: tuple[Path, Path]) -> None:
    clone, bare = cloned
    g = Git(clone)
    assert g.remotes() == ["origin"]
    assert g.remote_url("origin") == str(bare)
    assert g.remote_url("nope") is None
    assert g.upstream("main") == "origin/main"
    g.create_branch("local", "main")
    assert g.upstream("local") is None
    # a teammate pushes one commit; we make one locally
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    add_commit(other, "t.txt", "t\n", "Teammate")
    git(other, "push", "-q", "origin", "main")
    add_commit(clone, "l.txt", "l\n", "Local")
    assert g.ahead_behind("main", "origin/main") == (1, 0)
    g.fetch("origin")
    assert g.ahead_behind("main", "origin/main") == (1, 1)
    assert g.ls_remote("origin")["refs/heads/main"] == git(other, "rev-parse", "HEAD")


def test_fetch_of_unknown_remote_fails(cloned: tuple[Path, Path]) -> None:
    with pytest.raises(GitError, match="git fetch"):
        Git(cloned[0]).fetch("nowhere")


def test_push_atomic_all_or_nothing(tmp_path: Path, cloned: tuple[Path, Path]) -> None:
    clone, bare = cloned
    g = Git(clone)
    g.tag_annotated("v9", "Release 9")
    g.push_atomic("origin", ["refs/tags/v9:refs/tags/v9"])
    assert "refs/tags/v9" in g.ls_remote("origin")
    # main diverges from the remote: the non-fast-forward push of main must also stop the tag
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(bare), str(other))
    add_commit(other, "t.txt", "t\n", "Teammate")
    git(other, "push", "-q", "origin", "main")
    add_commit(clone, "l.txt", "l\n", "Local")
    g.tag_annotated("v10", "Release 10")
    before = g.ls_remote("origin")
    with pytest.raises(GitError, match="git push --atomic"):
        g.push_atomic("origin", ["refs/heads/main:refs/heads/main", "refs/tags/v10:refs/tags/v10"])
    assert g.ls_remote("origin") == before


def test_worktrees(tmp_path: Path, repo: Path) -> None:
    g = Git(repo)
    where = tmp_path / "wt"
    g.worktree_add(where, "minion/task-1", "main")
    assert Git(where).current_branch() == "minion/task-1"
    assert g.branch_exists("minion/task-1")
    (where / "scratch.txt").write_text("s\n")
    g.worktree_remove(where)
    assert not where.exists()
    assert str(where) not in g.run("worktree", "list")


def test_remote_named_accepts_a_name_or_owner_slash_repo(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git = Git(repo)
    git.run("remote", "add", "origin", "git@github.com:acme/core.git")
    git.run("remote", "add", "mirror", "https://example.com/acme/other/")
    assert git.remote_named("origin") == "origin"
    assert git.remote_named("acme/core") == "origin"
    assert git.remote_named("acme/other") == "mirror"
    assert git.remote_named("acme/nothing") is None
    assert git.remote_named("upstream") is None


def test_head_name_read_from_the_head_file_answers_as_git_does(repo: Path, tmp_path: Path) -> None:
    """``head_name`` reads the branch from ``.git/HEAD`` without running git in the plain
    case; every case answers what git says (unusual ones are asked to git)."""

    def by_git(path: Path) -> str:
        return Git(path).current_branch() or Git(path).head()

    g = Git(repo)
    assert head_file.branch(repo) == "main"
    assert head_name(g) == by_git(repo) == "main"
    git(repo, "checkout", "-q", "-b", "feature/a.b-c")
    assert head_file.branch(repo) == "feature/a.b-c"
    assert head_name(g) == by_git(repo) == "feature/a.b-c"
    git(repo, "checkout", "-q", "--orphan", "unborn")  # a branch with no commit yet
    assert head_file.branch(repo) == "unborn" == g.current_branch()
    git(repo, "checkout", "-q", "-f", "main")
    git(repo, "checkout", "-q", "--detach", "HEAD")
    assert head_file.branch(repo) is None  # detached: git says which commit
    assert head_name(g) == by_git(repo) == g.head()
    git(repo, "checkout", "-q", "main")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "side", str(linked))
    assert (linked / ".git").is_file() and head_file.branch(linked) == "side"
    assert head_name(Git(linked)) == by_git(linked) == "side"
    # not a repository as git sees one (no object store): git is asked, and says so
    fake = tmp_path / "fake"
    (fake / ".git").mkdir(parents=True)
    (fake / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert head_file.read(fake) is None and head_file.branch(fake) is None
    with pytest.raises(RepoNotFound):
        head_name(Git(fake))
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/.invalid\n")  # as reftable writes
    assert head_file.branch(repo) is None
