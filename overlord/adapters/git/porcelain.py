"""The read-only questions ``overlord status`` asks git, and parsers of git's
machine-readable answers (dates, ``status --porcelain=v2``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

#: Field separator in ``--format`` strings (unit separator, never in a ref name).
SEP = "\x1f"
#: Branch, upstream, ahead/behind and path counts. ``--no-optional-locks``: a read never
#: takes the index lock (nor rewrites the index) under the person's own git commands.
STATUS_ARGS = ("--no-optional-locks", "status", "--porcelain=v2", "--branch", "-unormal")
#: Branches and tags (tips, dates, subjects) and any replace ref (which changes history).
REFS_ARGS = (
    "for-each-ref",
    "--format="
    + SEP.join(
        (
            "%(refname)",
            "%(objectname)",
            "%(committerdate:iso-strict)",
            "%(creatordate:iso-strict)",
            "%(contents:subject)",
        )
    ),
    "refs/heads",
    "refs/tags",
    "refs/replace",
)


def merged_args(mains: list[str]) -> tuple[str, ...]:
    """The local branches whose tips are reachable from any of the branches ``mains``."""
    merged = tuple(f"--merged=refs/heads/{b}" for b in mains)
    return ("for-each-ref", "--format=%(refname:lstrip=2)", *merged, "refs/heads")


def parse_date(text: str) -> datetime:
    """An ISO-8601 strict date as printed by git (``%cI``, ``:iso-strict``)."""
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def parse_status_v2(text: str) -> dict[str, Any]:
    """Parse ``git status --porcelain=v2 [--branch]``: branch headers and path counts."""
    info: dict[str, Any] = {
        "oid": None,
        "head": None,
        "upstream": None,
        "ahead": 0,
        "behind": 0,
        "counts": {"staged": 0, "modified": 0, "untracked": 0, "conflicted": 0},
    }
    counts = info["counts"]
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            info["oid"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            info["head"] = None if head == "(detached)" else head
        elif line.startswith("# branch.upstream "):
            info["upstream"] = line.split(" ", 2)[2]
        elif line.startswith("# branch.ab "):
            ahead, behind = line.split(" ")[2:4]
            info["ahead"], info["behind"] = abs(int(ahead)), abs(int(behind))
        elif line.startswith(("1 ", "2 ")):
            xy = line[2:4]
            counts["staged"] += xy[0] != "."
            counts["modified"] += xy[1] != "."
        elif line.startswith("u "):
            counts["conflicted"] += 1
        elif line.startswith("? "):
            counts["untracked"] += 1
    return info
