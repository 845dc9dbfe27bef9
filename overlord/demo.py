"""A small, realistic demo workspace: a library, its dependents and a tool, with remotes.

``build_workspace`` creates ``repos/<name>`` (working repositories), ``remotes/<name>.git``
(bare remotes, the ``origin`` of each repo) and ``overlord.yml`` under a root. The test kit
(tests/kit.py) and ``overlord demo`` (``create``) both use it. Only the standard library and
plain git argument lists: it must run on a fresh machine, fast, without a git identity.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from overlord.errors import ConfigError, GitError

DEMO_NAME = "Overlord Demo"
DEMO_EMAIL = "demo@overlord.invalid"
OLD_DAYS = 90
MARKER = ".overlord-demo"
CONFIG_NAME = "overlord.yml"
#: Where a git-location variable in the caller's environment would send git astray.
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
)
#: Settings forced while building, whatever the user's git config says (no signing
#: prompts, no global hooks such as a pre-commit framework, no background gc).
_FORCED_CONFIG = (
    ("commit.gpgsign", "false"),
    ("tag.gpgsign", "false"),
    ("core.hooksPath", os.devnull),
    ("gc.auto", "0"),
    ("advice.detachedHead", "false"),
)


def identity_env(name: str = DEMO_NAME, email: str = DEMO_EMAIL) -> dict[str, str]:
    """Author and committer identity for git, as environment variables."""
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    env.update(LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0")
    env["GIT_CONFIG_COUNT"] = str(len(_FORCED_CONFIG))
    for i, (key, value) in enumerate(_FORCED_CONFIG):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    env.update(extra)
    return env


def days_ago(days: float) -> str:
    """A git date string *days* before now."""
    return f"@{int(time.time() - days * 86400)} +0000"


@dataclass
class Workspace:
    root: Path
    config_path: Path
    repos: dict[str, Path] = field(default_factory=dict)
    remotes: dict[str, Path] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    expected_depends_on: dict[str, list[str]] = field(default_factory=dict)
    test_command: str = ""


# name -> (role, branch_model, depends_on, [project].dependencies, optional deps)
PROJECTS: dict[str, tuple[str, str, list[str], list[str], dict[str, list[str]]]] = {
    "core": ("shared-library", "develop-main", [], [], {}),
    "api": ("application", "develop-main", ["core"], ["acme-core>=0.1.0", "requests>=2.28"], {}),
    "web": (
        "application",
        "develop-main",
        ["core", "api"],
        ["acme-core==0.1.0"],
        {"server": ["acme-api~=0.1.0"]},
    ),
    "tools": ("tooling", "trunk", [], [], {}),
}


class _Builder:
    """Runs the git commands of one build with one environment (identity included)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = _base_env(env)

    def git(self, cwd: Path | str, *args: str, date: str | None = None) -> str:
        env = self.env
        if date is not None:
            env = {**env, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        try:
            proc = subprocess.run(
                ["git", "-C", str(cwd), *args], capture_output=True, text=True, env=env
            )
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH", "install git") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise GitError(f"`git {' '.join(args)}` failed in {cwd}: {last}", stderr=proc.stderr)
        return proc.stdout.rstrip("\n")

    def commit_file(
        self, repo: Path, relpath: str, content: str, message: str, date: str | None = None
    ) -> None:
        target = repo / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        self.git(repo, "add", "--", relpath)
        self.git(repo, "commit", "-q", "-m", message, date=date)

    def feature_branch(self, repo: Path, branch: str, date: str | None, merge: bool) -> None:
        slug = branch.rsplit("/", 1)[-1]
        self.git(repo, "switch", "-q", "-c", branch, "develop")
        self.commit_file(repo, f"features/{slug}.txt", f"{branch}\n", f"Work on {branch}", date)
        self.git(repo, "switch", "-q", "develop")
        if merge:
            message = f"Merge branch '{branch}' into develop"
            self.git(repo, "merge", "-q", "--no-ff", "-m", message, branch)

    def repo(self, root: Path, name: str) -> tuple[Path, Path]:
        _, model, _, deps, extras = PROJECTS[name]
        repo, remote = root / "repos" / name, root / "remotes" / f"{name}.git"
        self.git(root, "init", "-q", "-b", "main", str(repo))
        self.git(root, "init", "-q", "--bare", "-b", "main", str(remote))
        _write_initial_files(repo, name, deps, extras)
        self.git(repo, "add", "-A")
        self.git(repo, "commit", "-q", "-m", f"Initial commit of acme-{name}")
        if model == "develop-main":
            self.git(repo, "tag", "-a", "v0.1.0", "-m", "Release 0.1.0")
            self.git(repo, "switch", "-q", "-c", "develop")
            changelog = "# Changelog\n\n## Unreleased\n\n- Start 0.2.0\n"
            self.commit_file(repo, "CHANGELOG.md", changelog, "Start 0.2.0")
        if name == "core":
            old = days_ago(OLD_DAYS)
            self.feature_branch(repo, "feature/old-merged", old, merge=True)
            self.feature_branch(repo, "feature/old-unmerged", old, merge=False)
            self.feature_branch(repo, "feature/recent-merged", None, merge=True)
        elif name == "api":
            self.feature_branch(repo, "feature/old-merged", days_ago(OLD_DAYS), merge=True)
        self.git(repo, "remote", "add", "origin", str(remote))
        self.git(repo, "push", "-q", "-u", "--follow-tags", "origin", "--all")
        return repo, remote

    def make_behind(self, repo: Path, remote: Path) -> None:
        """A teammate pushes to develop on *remote*; *repo* fetches it (behind by one)."""
        with tempfile.TemporaryDirectory(prefix="overlord-demo-") as tmp:
            clone = Path(tmp) / "clone"
            self.git(tmp, "clone", "-q", "-b", "develop", str(remote), str(clone))
            note = "Pushed by a teammate.\n"
            self.commit_file(clone, "UPSTREAM.md", note, "Teammate change on develop")
            self.git(clone, "push", "-q", "origin", "develop")
        self.git(repo, "fetch", "-q", "origin")


def _pyproject(name: str, deps: list[str], extras: dict[str, list[str]]) -> str:
    lines = [
        "[build-system]",
        'requires = ["setuptools>=61"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f'name = "acme-{name}"',
        'version = "0.1.0"',
        f'description = "Acme {name}"',
        'requires-python = ">=3.10"',
        f"dependencies = {json.dumps(deps)}",
    ]
    if extras:
        lines += ["", "[project.optional-dependencies]"]
        lines += [f"{extra} = {json.dumps(reqs)}" for extra, reqs in extras.items()]
    lines += ["", "[tool.pytest.ini_options]", 'testpaths = ["tests"]', ""]
    return "\n".join(lines)


def _write_initial_files(
    repo: Path, name: str, deps: list[str], extras: dict[str, list[str]]
) -> None:
    module = f"acme_{name}"
    files = {
        "README.md": f"# acme-{name}\n",
        ".gitignore": "__pycache__/\n.pytest_cache/\n*.pyc\n",
        "pyproject.toml": _pyproject(name, deps, extras),
        f"{module}/__init__.py": f'"""acme-{name}."""\n\n__version__ = "0.1.0"\n',
        "conftest.py": '"""Puts the repository root on sys.path."""\n',
        "tests/__init__.py": "",
        # unittest style: runs under pytest and under `python -m unittest` alike
        "tests/test_basic.py": (
            f"import unittest\n\nimport {module}\n\n\n"
            "class TestBasic(unittest.TestCase):\n"
            "    def test_version_is_str(self):\n"
            f"        self.assertIsInstance({module}.__version__, str)\n"
        ),
    }
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def has_pytest(python: str) -> bool:
    """Whether ``python`` (an interpreter path) can import pytest."""
    if python == sys.executable:
        return importlib.util.find_spec("pytest") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytest') is None)"
    try:
        proc = subprocess.run([python, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def pick_test_command(python: str, runner: str | None = None) -> str:
    """The repos' test command: pytest when ``python`` has it (or ``runner="pytest"``)."""
    if runner is None:
        runner = "pytest" if has_pytest(python) else "unittest"
    if runner == "pytest":
        return f"{shlex.quote(python)} -m pytest -q -p no:cacheprovider"
    if runner == "unittest":
        return f"{shlex.quote(python)} -m unittest -q"
    raise ValueError(f"unknown test runner {runner!r}")


def _config_text(ws: Workspace, header: str) -> str:
    q = json.dumps  # JSON strings are valid YAML scalars
    out = [
        header,
        f"workspace: {q(str(ws.root / 'repos'))}",
        f"state_url: {q(f'sqlite:///{ws.root}/state/overlord.db')}",
        "projects:",
    ]
    for name, (role, model, depends, _, _) in PROJECTS.items():
        out += [
            f"  {name}:",
            f"    path: {q(str(ws.repos[name]))}",
            "    remote: origin",
            f"    role: {role}",
            f"    branch_model: {model}",
            f"    depends_on: [{', '.join(depends)}]",
            f"    test_command: {q(ws.test_command)}",
            f"    package: {ws.packages[name]}",
        ]
    out += [
        "autonomy:",
        "  global: proactive   # cautious | proactive | scheduled",
        "dispatch:",
        "  max_concurrent_steps: 5",
        "  stale_branch_days: 30  # branches older than this are stale",
        "",
    ]
    return "\n".join(out)


def build_workspace(
    root: Path,
    *,
    behind_upstream: bool = True,
    python: str = sys.executable,
    runner: str | None = None,
    identity: Mapping[str, str] | None = None,
    header: str = "# Overlord configuration for the demo workspace.",
) -> Workspace:
    """Create repos/<name>, remotes/<name>.git and overlord.yml under *root*.

    core (shared library) <- api <- web, plus tools (trunk). develop-main repos carry an
    annotated v0.1.0 on main and one unreleased commit on develop; core and api have old
    merged feature branches (stale-branch material). With *behind_upstream*, api's develop
    is one commit behind origin and web's one ahead. *runner* is "pytest", "unittest" or
    None (pytest when *python* has it). *identity* defaults to ``identity_env()``.
    """
    root = root.resolve()
    (root / "repos").mkdir(parents=True, exist_ok=True)
    (root / "remotes").mkdir(parents=True, exist_ok=True)
    build = _Builder(identity if identity is not None else identity_env())
    ws = Workspace(
        root=root,
        config_path=root / CONFIG_NAME,
        test_command=pick_test_command(python, runner),
    )
    for name, spec in PROJECTS.items():
        ws.repos[name], ws.remotes[name] = build.repo(root, name)
        ws.packages[name] = f"acme-{name}"
        ws.expected_depends_on[name] = list(spec[2])
    if behind_upstream:
        build.make_behind(ws.repos["api"], ws.remotes["api"])
        build.commit_file(
            ws.repos["web"], "NOTES.md", "Local work, not pushed yet.\n", "Local work"
        )
    ws.config_path.write_text(_config_text(ws, header))
    return ws


def _check_destination(dest: Path, force: bool) -> None:
    config = dest / CONFIG_NAME
    built = [dest / d for d in ("repos", "remotes") if (dest / d).exists()]
    if not force:
        if config.exists():
            raise ConfigError(
                f"{config}: a configuration already exists", "pass --force to rebuild"
            )
        if any(p.is_file() or any(p.iterdir()) for p in built):
            raise ConfigError(f"{built[0]}: already exists", "pass --force to rebuild")
        return
    if built and not (dest / MARKER).exists():
        raise ConfigError(
            f"{built[0]}: exists and was not created by `overlord demo`; not removing it",
            "choose another directory for the demo",
        )


def create(dest: Path, *, force: bool = False, python: str = sys.executable) -> Workspace:
    """Build the demo workspace under *dest* (refused if one is there, unless *force*)."""
    dest = Path(dest).expanduser().resolve()
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest}: is not a directory", "choose a directory for the demo")
    _check_destination(dest, force)
    for sub in ("repos", "remotes", "state"):
        if force and (dest / MARKER).exists() and (dest / sub).exists():
            shutil.rmtree(dest / sub)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MARKER).write_text("Created by `overlord demo`; `--force` may delete this tree.\n")
    header = "# Overlord demo workspace, written by `overlord demo` (edit freely)."
    ws = build_workspace(dest, behind_upstream=False, python=python, header=header)
    # Overlord's own commits (version bumps, pins) need an identity: give the demo repos
    # one of their own, so a first release works on a machine with no git identity set.
    for repo in ws.repos.values():
        for key, value in (("user.name", DEMO_NAME), ("user.email", DEMO_EMAIL)):
            subprocess.run(
                ["git", "-C", str(repo), "config", key, value], check=True, capture_output=True
            )
    return ws
