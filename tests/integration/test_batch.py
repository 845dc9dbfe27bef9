"""``batch.run_all``: many git calls from one thread, each ending as ``Git.run`` would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from overlord.adapters.git.batch import Call, run_all
from overlord.adapters.git.git import Git
from overlord.errors import GitError, OverlordError, RepoNotFound
from tests.kit import add_commit, git, one_commit_repo


def _same_as_run(git_obj: Git, *args: str) -> None:
    call = Call(git_obj, *args)
    run_all([call])
    try:
        expected: str | OverlordError = git_obj.run(*args)
    except OverlordError as exc:
        expected = exc
    if isinstance(expected, OverlordError):
        with pytest.raises(type(expected)) as caught:
            call.output()
        assert caught.value.message == expected.message
    else:
        assert call.output() == expected


def test_outcomes_match_git_run(tmp_path: Path) -> None:
    repo = one_commit_repo(tmp_path / "repo")
    plain = tmp_path / "plain"
    plain.mkdir()
    big = "x" * 200_000 + "\n"  # more than a pipe holds
    add_commit(repo, "big.txt", big, "Big")
    for where, args in (
        (repo, ("rev-parse", "HEAD")),
        (repo, ("show", "HEAD:big.txt")),
        (repo, ("log", "--format=%s%n%b")),
        (repo, ("rev-parse", "--verify", "no-such-ref")),
        (plain, ("status",)),
        (tmp_path / "missing", ("status",)),
    ):
        _same_as_run(Git(where), *args)


def test_many_calls_at_once_keep_their_own_output(tmp_path: Path) -> None:
    repos = [one_commit_repo(tmp_path / f"r{i}", content=f"{i}\n") for i in range(12)]
    calls = [Call(Git(r), "show", "HEAD:app.py") for r in repos]
    run_all(calls, width=3)
    assert [c.output() for c in calls] == [f"{i}" for i in range(12)]


def test_missing_directory_starts_nothing(tmp_path: Path) -> None:
    call = Call(Git(tmp_path / "missing"), "status")
    assert call.done and not call.argv
    with pytest.raises(RepoNotFound, match="no such directory"):
        call.output()
    shared = Call(Git(tmp_path / "missing"), "log", like=call)
    assert shared.done


def test_timeout_stops_the_command_and_its_children(tmp_path: Path) -> None:
    repo = one_commit_repo(tmp_path / "repo")
    git(repo, "config", "alias.nap", "!sleep 30")  # a command that hangs, for the test
    started = time.monotonic()
    call = Call(Git(repo, timeout=0.5), "nap")
    run_all([call])
    assert time.monotonic() - started < 10
    with pytest.raises(GitError, match="timed out after 0.5s"):
        call.output()


def test_stop_leaves_the_rest_not_done(tmp_path: Path) -> None:
    repo = one_commit_repo(tmp_path / "repo")
    git(repo, "config", "alias.nap", "!sleep 30")
    calls = [Call(Git(repo), "nap") for _ in range(4)]
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    run_all(calls, width=2, stop=stop)
    assert time.monotonic() - started < 10
    assert not any(c.done for c in calls)
