"""Where the configuration file is, and how a path written in it resolves.

Nothing here validates (that is ``config``, with pydantic): this much is also what
``overlord status`` needs to start its git reads before the CLI has loaded
(``adapters.git.prefetch``), so it imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

from overlord import defaults


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the configuration lives: ``--config``, ``$OVERLORD_CONFIG``, the default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("OVERLORD_CONFIG")
    if env:
        return Path(env).expanduser()
    return Path(defaults.CONFIG_PATH).expanduser()


def expand(value: str | Path, base: Path) -> Path:
    path = Path(os.path.expandvars(str(value))).expanduser()
    return path if path.is_absolute() else (base / path)


def workspace_base(path: Path, workspace: str | Path | None) -> Path:
    """The directory the projects' paths in the file at ``path`` are relative to: its
    ``workspace`` (itself relative to the file's directory), else that directory."""
    config_dir = path.parent.resolve()
    return config_dir if workspace is None else expand(workspace, config_dir)
