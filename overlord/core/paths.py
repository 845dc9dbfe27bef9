"""Where Overlord may write in a repository: only inside its work tree (SPEC §4.6)."""

from __future__ import annotations

from pathlib import Path

from overlord.errors import MetadataError


def inside(repo: Path, path: Path) -> Path:
    """``path`` when it resolves (symbolic links followed) inside ``repo``'s work tree and
    outside its ``.git``; else ``MetadataError``: a version is never written elsewhere."""
    root = Path(repo).resolve()
    real = Path(path).resolve()
    if not real.is_relative_to(root) or real.is_relative_to(root / ".git"):
        raise MetadataError(
            f"{path}: resolves to {real}, outside the repository {root}; not writing it",
            "point the version file (e.g. [tool.hatch.version] path) inside the repository",
        )
    return path
