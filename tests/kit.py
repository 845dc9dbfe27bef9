"""Test kit: isolated git environment, a realistic multi-repo workspace, and snapshots.

Plain module (no pytest imports) so tests, benchmarks and scripts can all use it. The
workspace itself is built by ``overlord.demo`` (the same one ``overlord demo`` creates);
this module adds the test identity, fault injection and snapshots.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from overlord import demo
from overlord.demo import OLD_DAYS, Workspace, days_ago

__all__ = [
    "OLD_DAYS",
    "TEST_EMAIL",
    "TEST_NAME",
    "KitGitError",
    "Workspace",
    "add_commit",
    "add_failing_test",
    "add_reject_hook",
    "apply_env",
    "build_fresh_workspace",
    "build_workspace",
    "copy_workspace",
    "days_ago",
    "git",
    "isolate_git_env",
    "make_dirty",
    "snapshot",
    "workspace_snapshot",
]

TEST_NAME = "Overlord Test"
TEST_EMAIL = "test@example.com"
REMOVED_ENV = ("OVERLORD_CONFIG",)

_IDENTITY = {
    "GIT_AUTHOR_NAME": TEST_NAME,
    "GIT_AUTHOR_EMAIL": TEST_EMAIL,
    "GIT_COMMITTER_NAME": TEST_NAME,
    "GIT_COMMITTER_EMAIL": TEST_EMAIL,
}
_ADVICE_KEYS = (
    "detachedHead statusHints pushUpdateRejected pushNonFastForward resolveConflict commitBeforeMerge"
    " skippedCherryPicks waitingForEditor defaultBranchName setUpstreamFailure forceDeleteBranch"
).split()
_ADVICE = "".join(f"\t{key} = false\n" for key in _ADVICE_KEYS)
_GITCONFIG = f"""[user]
\tname = {TEST_NAME}
\temail = {TEST_EMAIL}
[init]
\tdefaultBranch = main
[protocol "file"]
\tallow = always
[advice]
{_ADVICE}[commit]
\tgpgsign = false
[tag]
\tgpgsign = false
[gc]
\tauto = 0
"""


class KitGitError(RuntimeError):
    """A git command run by the test kit failed."""


def isolate_git_env(home: Path) -> dict[str, str]:
    """Full environment for an isolated HOME (a copy of os.environ, adjusted).

    Sets HOME, GIT_CONFIG_GLOBAL (a file written under *home*), GIT_CONFIG_NOSYSTEM=1;
    drops OVERLORD_CONFIG and every other GIT_* variable (GIT_DIR, identities, ...).
    """
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(_GITCONFIG)
    env = {k: v for k, v in os.environ.items() if k not in REMOVED_ENV and not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def log_git_calls(tmp_path: Path, monkeypatch: Any) -> Path:
    """Put a ``git`` first on PATH that appends its arguments to the returned file, then
    runs the real git (for tests that count or inspect the git processes a command starts)."""
    real = shutil.which("git")
    assert real
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "calls.log"
    shim = shim_dir / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim_dir}{os.pathsep}{os.environ['PATH']}")
    return log


#: ``python -c ENTRY_PROBE ARGS`` runs ``overlord ARGS`` as the console script does and
#: ends its stderr with ``LOADED [...]``: which of the libraries a command should load
#: only when it needs them it did load (``entry_loaded`` reads it).
ENTRY_PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['overlord', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('overlord', run_name='__main__')\n"
    "finally:\n"
    "    heavy = ('typer', 'celery', 'docker', 'sqlalchemy', 'pydantic')\n"
    "    print('LOADED', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
)


def run_entry(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``overlord ARGS`` through ``ENTRY_PROBE``, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-c", ENTRY_PROBE, *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=60,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def entry_loaded(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The libraries a ``run_entry`` command loaded, of those ``ENTRY_PROBE`` looks for."""
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("LOADED ")][-1]
    return [
        name.strip(" '")
        for name in line.removeprefix("LOADED ").strip("[]").split(",")
        if name.strip()
    ]


def apply_env(monkeypatch: Any, env: Mapping[str, str]) -> None:
    """Make os.environ equal *env* through a pytest ``monkeypatch`` (undone after the test)."""
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def git(
    repo: Path | str, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> str:
    """Run ``git -C repo ARGS``; return stdout without its trailing newline."""
    full_env = {**os.environ, **_IDENTITY, **(env or {})}
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=full_env
    )
    if check and proc.returncode != 0:
        raise KitGitError(f"git {' '.join(args)} in {repo} failed: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def _date_env(date: datetime | str | None) -> dict[str, str] | None:
    if date is None:
        return None
    value = f"@{int(date.timestamp())} +0000" if isinstance(date, datetime) else date
    return {"GIT_AUTHOR_DATE": value, "GIT_COMMITTER_DATE": value}


def add_commit(
    repo: Path, relpath: str, content: str, message: str, date: datetime | str | None = None
) -> str:
    """Write *content* to repo/relpath, commit it on the current branch, return the sha."""
    target = repo / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    git(repo, "add", "--", relpath)
    git(repo, "commit", "-q", "-m", message, env=_date_env(date))
    return git(repo, "rev-parse", "HEAD")


def one_commit_repo(path: Path, content: str = "def answer():\n    return 41\n") -> Path:
    """A new repository at ``path``: ``app.py`` holding ``content``, committed on main."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    add_commit(path, "app.py", content, "initial")
    return path


def make_dirty(repo: Path) -> Path:
    """Modify a tracked file (README.md if present) without committing; return its path."""
    target = repo / "README.md"
    if not target.exists():
        target = repo / git(repo, "ls-files").splitlines()[0]
    with target.open("a") as handle:
        handle.write("\nuncommitted change\n")
    return target


def add_failing_test(repo: Path) -> str:
    """Commit a test that fails on the current branch; return the commit sha."""
    body = "def test_fails_on_purpose():\n    assert 1 == 2, 'injected failure'\n"
    return add_commit(repo, "tests/test_failing.py", body, "Add a failing test")


def add_reject_hook(repo: Path, hook_name: str) -> Path:
    """Install hook *hook_name* (e.g. pre-commit, pre-receive) that always exits 1.

    *repo* may be a working repository or a bare one.
    """
    hooks = repo / ".git" / "hooks" if (repo / ".git").is_dir() else repo / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / hook_name
    hook.write_text(f"#!/bin/sh\necho 'rejected by test {hook_name} hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


def build_fresh_workspace(
    root: Path, *, behind_upstream: bool = True, python: str = sys.executable
) -> Workspace:
    """``overlord.demo.build_workspace`` with the test identity and a pytest test command.

    core (shared library) <- api <- web, plus tools (trunk), each with a bare remote; with
    *behind_upstream* api's develop is one behind origin and web's one ahead. About 70 git
    commands: ``build_workspace`` copies one of these instead.
    """
    return demo.build_workspace(
        root,
        behind_upstream=behind_upstream,
        python=python,
        runner="pytest",
        identity=_IDENTITY,
        header="# Overlord configuration for the test workspace (written by tests/kit.py).",
    )


#: Workspaces built once per process (per ``behind_upstream`` and python) and copied by
#: ``build_workspace``; removed at exit. Nothing but ``build_workspace`` sees them.
_TEMPLATES: dict[tuple[bool, str], Workspace] = {}
_TEMPLATE_ROOT: Path | None = None


def _template(behind_upstream: bool, python: str) -> Workspace:
    global _TEMPLATE_ROOT
    key = (behind_upstream, python)
    if key not in _TEMPLATES:
        if _TEMPLATE_ROOT is None:
            _TEMPLATE_ROOT = Path(tempfile.mkdtemp(prefix="overlord-kit-templates-")).resolve()
            atexit.register(shutil.rmtree, _TEMPLATE_ROOT, True)
        root = _TEMPLATE_ROOT / f"ws{len(_TEMPLATES)}-{'behind' if behind_upstream else 'synced'}"
        _TEMPLATES[key] = build_fresh_workspace(
            root, behind_upstream=behind_upstream, python=python
        )
    return _TEMPLATES[key]


def copy_workspace(template: Workspace, root: Path) -> Workspace:
    """A copy of ``template`` at ``root``: its repositories, remotes and overlord.yml, with
    every absolute path (the config's, each ``origin`` URL, FETCH_HEAD) moved to ``root``."""
    root = root.resolve()
    shutil.copytree(template.root, root, symlinks=True)
    old, new = str(template.root), str(root)
    texts = [root / template.config_path.name]
    for name in template.repos:
        texts += [root / "repos" / name / ".git" / f for f in ("config", "FETCH_HEAD")]
    for path in texts:
        if path.exists():
            path.write_text(path.read_text().replace(old, new))
    for name in template.repos:  # the copies' inodes and ctimes are new: index stat info too
        git(root / "repos" / name, "update-index", "-q", "--refresh", check=False)

    def moved(path: Path) -> Path:
        return root / path.relative_to(template.root)

    return Workspace(
        root=root,
        config_path=moved(template.config_path),
        repos={name: moved(path) for name, path in template.repos.items()},
        remotes={name: moved(path) for name, path in template.remotes.items()},
        packages=dict(template.packages),
        expected_depends_on={k: list(v) for k, v in template.expected_depends_on.items()},
        test_command=template.test_command,
    )


def build_workspace(
    root: Path, *, behind_upstream: bool = True, python: str = sys.executable
) -> Workspace:
    """The test workspace (``build_fresh_workspace``'s) at ``root``: a copy of one built once
    per process, so each test gets its own repositories without ~70 git commands.

    core (shared library) <- api <- web, plus tools (trunk), each with a bare remote; with
    *behind_upstream* api's develop is one behind origin and web's one ahead.
    """
    return copy_workspace(_template(behind_upstream, python), root)


def _snapshot_one(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    head = git(
        path,
        "rev-parse",
        "--is-bare-repository",
        "HEAD",
        "--symbolic-full-name",
        "HEAD",
        check=False,
    )
    lines = head.splitlines()
    head_sha: str | None
    head_name: str | None
    if len(lines) == 3:
        bare, head_sha, head_ref = lines[0] == "true", lines[1], lines[2]
        head_name = head_sha if head_ref == "HEAD" else head_ref
    else:  # unborn HEAD
        bare = git(path, "rev-parse", "--is-bare-repository") == "true"
        head_sha, head_name = None, git(path, "symbolic-ref", "-q", "HEAD", check=False) or None
    refs = git(path, "for-each-ref", "--format=%(refname) %(objectname)")
    status = None
    if not bare:
        status = git(path, "status", "--porcelain=v1", "--untracked-files=all", "--ignored=no")
    return {
        "refs": dict(line.split(" ", 1) for line in refs.splitlines() if line),
        "head": head_name,
        "head_commit": head_sha,
        "status": status,
    }


def snapshot(paths: Iterable[Path]) -> dict[str, dict[str, Any] | None]:
    """Refs, HEAD, HEAD commit and porcelain status of each repo, keyed by ``str(path)``."""
    return {str(p): _snapshot_one(Path(p)) for p in paths}


def workspace_snapshot(ws: Workspace) -> dict[str, dict[str, Any] | None]:
    """Snapshot of every working repo and every bare remote of *ws*."""
    return snapshot([*ws.repos.values(), *ws.remotes.values()])


def peak_overlap(spans: Iterable[tuple[datetime | None, datetime | None]]) -> int:
    """The most spans (start, end) open at one moment; an end before a start at one instant."""
    spans = list(spans)
    changes = sorted(
        [(start, 1) for start, _ in spans if start] + [(end, -1) for _, end in spans if end],
        key=lambda change: (change[0], change[1]),
    )
    running = peak = 0
    for _, delta in changes:
        running += delta
        peak = max(peak, running)
    return peak


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
