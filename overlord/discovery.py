"""Find the git repositories under a directory and draft a configuration for them.

Used by ``overlord init``: each repository becomes a project; ``depends_on`` is inferred
from packaging metadata (a pyproject dependency naming another project's distribution).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from overlord import defaults
from overlord.core import metadata
from overlord.errors import ConfigError, OverlordError

_SKIP = {"node_modules", "__pycache__", "site-packages"}
_PLAIN = re.compile(r"^[A-Za-z0-9_./~][A-Za-z0-9_./~-]*$")


@dataclass
class Discovered:
    """One git repository found under the root."""

    name: str
    path: Path
    distribution: str | None = None
    dependencies: list[str] = field(default_factory=list)
    branch_model: str = "trunk"
    remote: str | None = None
    role: str = "application"
    depends_on: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": str(self.path),
            "package": self.distribution,
            "branch_model": self.branch_model,
            "remote": self.remote,
            "role": self.role,
            "depends_on": list(self.depends_on),
            "problems": list(self.problems),
        }


def _is_repo(path: Path) -> bool:
    return (path / ".git").exists()


def _skipped(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or name in _SKIP or (path / "pyvenv.cfg").is_file()


def _find(root: Path, max_depth: int) -> list[Path]:
    if _is_repo(root):
        return [root]
    found: list[Path] = []
    frontier = [root]
    for _ in range(max_depth):
        nxt: list[Path] = []
        for directory in frontier:
            try:
                children = sorted(p for p in directory.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                if _skipped(child) or child.is_symlink():
                    continue
                (found if _is_repo(child) else nxt).append(child)
        frontier = nxt
    return sorted(found)


def _names(paths: list[Path], root: Path) -> list[str]:
    """Directory names, made unique with their parents' names where they clash."""
    names = [p.name for p in paths]
    for i, path in enumerate(paths):
        if [p.name for p in paths].count(path.name) > 1:
            rel = path.relative_to(root) if path != root else Path(path.name)
            names[i] = "-".join(rel.parts)
    return names


def _git_facts(item: Discovered) -> None:
    from overlord.adapters.git.git import Git

    git = Git(item.path)
    try:
        refs = git.run("for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes")
        remotes = git.remotes()
    except OverlordError as exc:
        item.problems.append(exc.message)
        return
    has_develop = any(
        ref == "refs/heads/develop"
        or (ref.startswith("refs/remotes/") and ref.endswith("/develop"))
        for ref in refs.splitlines()
    )
    item.branch_model = "develop-main" if has_develop else "trunk"
    item.remote = "origin" if "origin" in remotes else (remotes[0] if remotes else None)


def _metadata_facts(item: Discovered) -> None:
    try:
        item.distribution = metadata.distribution_name(item.path)
        if item.distribution is not None:
            item.dependencies = [req.name for req in metadata.dependencies(item.path)]
    except OverlordError as exc:
        item.problems.append(exc.message)


def discover(root: Path, *, max_depth: int = 3) -> list[Discovered]:
    """The git repositories under ``root`` (not inside one another), with inferred facts."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory", "pass the directory holding your repos")
    paths = _find(root, max_depth)
    found = [Discovered(name=n, path=p) for n, p in zip(_names(paths, root), paths, strict=True)]
    for item in found:
        _git_facts(item)
        _metadata_facts(item)
    graph = infer_depends_on(found)
    used = {dep for deps in graph.values() for dep in deps}
    for item in found:
        item.depends_on = graph[item.name]
        item.role = "shared-library" if item.name in used else "application"
    return found


def infer_depends_on(found: list[Discovered]) -> dict[str, list[str]]:
    """Project name → the discovered projects whose distribution it requires."""
    known: dict[str, str] = {
        canonicalize_name(item.distribution): item.name for item in found if item.distribution
    }
    graph: dict[str, list[str]] = {}
    for item in found:
        deps: list[str] = []
        if item.distribution is not None:
            try:
                deps = metadata.depends_on_names(item.path, known)
            except OverlordError as exc:
                item.problems.append(exc.message)
        graph[item.name] = [d for d in deps if d != item.name]
    return graph


def _scalar(value: str) -> str:
    """A YAML scalar: plain when it reads back as the same string, else double-quoted."""
    import yaml

    if _PLAIN.match(value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def _relative(path: Path, workspace: Path) -> str:
    try:
        rel = path.resolve().relative_to(workspace.resolve())
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else "."


def render_config(found: list[Discovered], workspace: Path) -> str:
    """The YAML text of a configuration for ``found`` (paths relative to ``workspace``)."""
    workspace = Path(workspace).expanduser().resolve()
    out = [
        "# Overlord configuration, drafted by `overlord init` from the repositories it found.",
        "# Review depends_on, roles and branch models; see SPEC §1 for every key.",
        f"workspace: {_scalar(str(workspace))}",
        "projects:",
    ]
    for item in found:
        deps = ", ".join(_scalar(d) for d in item.depends_on)
        out.append(f"  {_scalar(item.name)}:")
        out.append(f"    path: {_scalar(_relative(item.path, workspace))}")
        if item.remote is not None:
            out.append(f"    remote: {_scalar(item.remote)}")
        out.append(f"    role: {item.role}")
        out.append(f"    branch_model: {item.branch_model}")
        out.append(f"    depends_on: [{deps}]")
        if item.distribution:
            out.append(f"    package: {_scalar(item.distribution)}")
    if not found:
        out[-1] = "projects: {}"
    out += [
        "autonomy:",
        "  global: cautious            # cautious | proactive | scheduled",
        "# models:                     # LLM endpoints for minions; uncomment and adapt",
        "#   local-14b: {endpoint: http://127.0.0.1:5000/v1, model: qwen2.5-coder-14b, "
        "tier: local, concurrent: 2}",
        "#   cloud-fast: {endpoint: https://api.anthropic.com/v1, model: claude-haiku-4-5, "
        "tier: cloud-fast, concurrent: 10, api_key_env: ANTHROPIC_API_KEY}",
        "dispatch:",
        f"  max_concurrent_steps: {defaults.MAX_CONCURRENT_STEPS}",
        f"  step_timeout_default: {defaults.STEP_TIMEOUT}",
        "  rollback_on_failure: true",
        f"  stale_branch_days: {defaults.STALE_BRANCH_DAYS}",
        "",
    ]
    return "\n".join(out)


def write_config(path: Path, text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` (parents created); never overwrite without ``force``."""
    path = Path(path).expanduser()
    if path.exists() and not force:
        raise ConfigError(
            f"{path}: a configuration file already exists", "pass --force to overwrite it"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None
    return path
