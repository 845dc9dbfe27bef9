"""What ``overlord status`` reads of the configuration, and the digest that spares a
plain ``status`` validating an unchanged file.

Validating the file (``config``, with pydantic) costs a plain ``overlord status`` more
CPU than git's reads of fifty repositories, and status needs little of it: each
project's name, path, branch model and remote, ``dispatch.stale_branch_days`` and the
names of the secret variables (kept out of git's environment). ``StatusConfig`` is that
much, made from a validated ``Config`` (``StatusConfig.of``).

After a status validated the file, ``remember`` records it in the state directory
(``defaults.CONFIG_DIGEST_FILE``) under the SHA-256 of the very bytes validated and a
fingerprint of the code that read them (Overlord's, pydantic's, PyYAML's). ``lookup``
gives it back for a file with exactly those bytes, read by exactly that code; anything
else (another byte, an upgrade or an edit of that code, a digest that cannot be read) is
a miss, and the command validates the file as
it always does. Paths are kept as written and resolved at each lookup exactly as
``config`` resolves them, since the environment and working directory may differ. Only
names are kept: a configuration whose loading learns secret values (a password in a
URL, a webhook URL written in the file) is never recorded. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from overlord import __version__, cache_file, defaults
from overlord.core.config_file import expand, workspace_base

if TYPE_CHECKING:
    from overlord.core.config import Config

_VERSION = 1
#: Digests kept per state directory (one per configuration file, most recent first).
_KEPT = 8
_PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StatusProject:
    name: str
    path: Path
    branch_model: str
    remote: str


@dataclass(frozen=True)
class StatusConfig:
    """The part of a valid configuration ``overlord status`` reads."""

    source: Path | None
    projects: dict[str, StatusProject]
    stale_branch_days: int
    secret_names: frozenset[str]

    @property
    def state_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    @classmethod
    def of(cls, config: Config) -> StatusConfig:
        from overlord.core import secrets

        projects = {
            name: StatusProject(name, p.path, p.branch_model.value, p.remote)
            for name, p in config.projects.items()
        }
        names, _ = secrets.of_config(config)
        days = config.dispatch.stale_branch_days
        return cls(config.source, projects, days, frozenset(names))


#: The libraries that read and validate the file (found on the path, not imported).
_READERS = ("pydantic", "pydantic_core", "yaml")


def code_fingerprint() -> str:
    """Overlord's version and the size and modification time of each of its modules and
    of the libraries that read the file: what decides whether a file is valid, and what
    is read of it (an upgrade or an edit of any of them is other code)."""
    from importlib.util import find_spec

    found: list[str] = [__version__]
    for name in _READERS:
        spec = find_spec(name)
        if spec is not None and spec.origin:
            stat = os.stat(spec.origin)
            found.append(f"{spec.origin}:{stat.st_size}:{stat.st_mtime_ns}")
        else:
            found.append(f"{name}: not found")
    pending = [str(_PACKAGE)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    stat = entry.stat()
                    found.append(f"{entry.path}:{stat.st_size}:{stat.st_mtime_ns}")
                elif entry.name != "__pycache__" and entry.is_dir():
                    pending.append(entry.path)
    return hashlib.sha256("\n".join(sorted(found)).encode()).hexdigest()


def _digest_file(path: Path) -> Path:
    return path.parent / defaults.CONFIG_DIGEST_FILE


def remember(config: Config) -> None:
    """Record ``config`` (validated from the bytes ``config.digest`` names) for ``lookup``;
    nothing when it learned secret values, or when the file cannot be written."""
    from overlord.core import secrets

    path, key = config.source, config.digest
    names, values = secrets.of_config(config)
    if path is None or key is None or values:
        return
    try:
        code = code_fingerprint()
    except (OSError, ImportError, ValueError):
        return
    workspace, paths = config.as_written
    entry = {
        "code": code,
        "workspace": workspace,
        "projects": [
            [name, paths[name], p.branch_model.value, p.remote]
            for name, p in config.projects.items()
        ],
        "stale_branch_days": config.dispatch.stale_branch_days,
        "secret_names": sorted(names),
    }
    file = _digest_file(path)
    entries = cache_file.load(file, _VERSION, "entries")
    if entries.get(key) == entry:
        return
    entries.pop(key, None)
    kept = {key: entry, **dict(list(entries.items())[: _KEPT - 1])}
    cache_file.save(file, _VERSION, "entries", kept)


def lookup(path: Path) -> StatusConfig | None:
    """The status part of the configuration file at ``path`` if its bytes were validated
    by this very code before (``remember``), resolved here and now; else None."""
    try:
        key = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    entry = cache_file.load(_digest_file(path), _VERSION, "entries").get(key)
    if not isinstance(entry, dict):
        return None
    try:
        if entry.get("code") != code_fingerprint():
            return None
        base = workspace_base(path, entry["workspace"])
        projects = {
            name: StatusProject(name, expand(where, base), model, remote)
            for name, where, model, remote in entry["projects"]
        }
        return StatusConfig(
            path, projects, int(entry["stale_branch_days"]), frozenset(entry["secret_names"])
        )
    except (KeyError, TypeError, ValueError, OSError, ImportError, RuntimeError):
        return None
