"""A cache kept as one JSON file, ``{"version": V, KEY: {...}}``, next to the state.

Read leniently: a file that is missing, unreadable, of another version or of another
shape is an empty cache. Replaced atomically: a reader sees the old file or the new
one, and a write that fails leaves no temporary file. Never an error: a cache that
cannot be kept is no cache. Standard library only (``overlord status`` uses it).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def load(path: Path, version: int, key: str) -> dict[str, Any]:
    """The entries under ``key`` of the cache file at ``path`` (empty when unusable)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != version:
        return {}
    entries = doc.get(key)
    return entries if isinstance(entries, dict) else {}


def save(path: Path, version: int, key: str, entries: dict[str, Any]) -> bool:
    """Replace the cache file at ``path`` with ``entries``; False when it cannot."""
    text = json.dumps({"version": version, key: entries}, separators=(",", ":"))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False
    return True
