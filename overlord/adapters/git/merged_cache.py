"""Which local branches are merged into the main line, remembered by commit id.

``git for-each-ref --merged=<main>`` answers from the commit graph alone: asked about the
same main-line branches, with every local branch at the same tip, it gives the same
answer. ``overlord status`` keeps that answer per repository in one JSON file in the
state directory (``defaults.STATUS_CACHE_FILE``), under a key made of the main line
asked about and every (branch, tip commit) pair: a branch moved, added or removed
misses, and git is asked again. A repository whose history can change under the same
commit ids (shallow, grafts, replace refs) is never cached; neither is one whose git
directory is not where a work tree keeps it. A cache that cannot be read or written is
no cache (never an error).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from overlord import cache_file
from overlord.adapters.git import head_file

_VERSION = 1


def key(mains: Sequence[str], tips: Iterable[tuple[str, str]]) -> str:
    """The cache key of a question: the main line and every (branch, tip commit)."""
    text = json.dumps([list(mains), sorted(tips)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _git_dirs(repo: Path) -> list[Path] | None:
    """The git directory of the work tree ``repo`` (and its common directory, if any)."""
    gitdir = head_file.git_dir(repo)
    if gitdir is None:
        return None
    common = gitdir / "commondir"
    try:
        return [gitdir, gitdir / common.read_text().strip()] if common.is_file() else [gitdir]
    except (OSError, UnicodeDecodeError):
        return None


def history_is_fixed(repo: Path) -> bool:
    """Whether commit ids alone fix ``repo``'s history: no ``shallow`` file, no
    ``info/grafts`` (replace refs are seen in the refs the scanner reads)."""
    dirs = _git_dirs(repo)
    if dirs is None:
        return False
    return not any((d / "shallow").exists() or (d / "info" / "grafts").exists() for d in dirs)


class MergedCache:
    """The cache file at ``path`` (None: remember nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, object]] | None = None
        self._changed = False

    def _load(self) -> dict[str, dict[str, object]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                self._entries = cache_file.load(self.path, _VERSION, "repos")
        return self._entries

    def get(self, repo: Path, question: str) -> list[str] | None:
        """The merged branches remembered for ``repo`` under key ``question``, if any."""
        if self.path is None:
            return None
        entry = self._load().get(str(repo))
        if not isinstance(entry, dict) or entry.get("key") != question:
            return None
        merged = entry.get("merged")
        if not isinstance(merged, list) or not all(isinstance(b, str) for b in merged):
            return None
        return list(merged)

    def put(self, repo: Path, question: str, merged: Sequence[str]) -> None:
        if self.path is None:
            return
        self._load()[str(repo)] = {"key": question, "merged": list(merged)}
        self._changed = True

    def save(self) -> None:
        """Write the file when something was added (atomically: a reader sees the old
        file or the new one)."""
        if self.path is None or not self._changed:
            return
        if cache_file.save(self.path, _VERSION, "repos", self._load()):
            self._changed = False
