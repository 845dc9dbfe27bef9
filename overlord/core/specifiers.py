"""A version specifier rewritten to admit a new version, keeping its operators and width
(PEP 440 and Poetry clauses): ``>=0.1.0`` → ``>=0.2.0``, ``~=0.1`` → ``~=0.2``,
``>=0.1,<0.2`` → ``>=0.2,<0.3``, ``^0.1.0`` → ``^0.2.0``. Text in, text out."""

from __future__ import annotations

import re

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

_CLAUSE = re.compile(r"(?P<op>===|~=|==|!=|<=|>=|<|>|\^|~)?\s*(?P<v>[A-Za-z0-9.*+!_-]+)")


def _format(version: Version, width: int, *, truncate: bool = False) -> str:
    """``version`` written with ``width`` release components (padded; trimmed if zeros)."""
    release = list(version.release)
    if truncate:
        release = release[:width]
    while len(release) > width and release[-1] == 0:
        release.pop()
    release += [0] * (width - len(release))
    text = ".".join(str(n) for n in release)
    if version.epoch:
        text = f"{version.epoch}!{text}"
    suffix = version.public[len(version.base_version) :]  # pre/post/dev; never +local
    return text + ("" if truncate else suffix)


def _bump_upper(bound: str, new: Version) -> str:
    """An upper bound like ``bound`` (same width and step) that lies above ``new``."""
    parts = [int(p) for p in Version(bound).release]
    step = max((i for i, p in enumerate(parts) if p), default=0)
    release = list(new.release) + [0] * len(parts)
    out = release[: step + 1]
    out[step] += 1
    out += [0] * (len(parts) - len(out))
    return ".".join(str(n) for n in out)


def _rewrite_clause(op: str, old: str, new: Version) -> str | None:
    """The clause's new version text (None drops the clause); ``old`` when it stays."""
    if old.endswith(".*"):
        prefix = _format(new, len(old[:-2].split(".")), truncate=True)
        if op == "!=":
            return None if prefix == old[:-2] else old
        return f"{prefix}.*"
    try:
        current = Version(old)
    except InvalidVersion:
        return old
    width = len(current.release)
    if op in ("", "==", "===", ">=", "^"):
        return _format(new, width)
    if op in ("~=", "~"):
        cand = _format(new, width, truncate=True)
        if op == "~=":
            admits = width >= 2 and SpecifierSet(f"~={cand}").contains(new, prereleases=True)
        else:
            admits = not new.is_prerelease
        return cand if admits else _format(new, width)
    if op == "!=":
        return None if current == new else old
    if op in ("<", "<="):
        if SpecifierSet(f"{op}{old}").contains(new, prereleases=True):
            return old
        return _bump_upper(old, new) if op == "<" else _format(new, width)
    if op == ">":
        return old if new > current else _format(new, width)
    return old


def rewrite_specifier(spec: str, new: Version) -> str:
    """``spec`` (PEP 440 or Poetry clauses) rewritten to admit ``new``, keeping operators."""
    out: list[str] = []
    for clause in spec.split(","):
        match = _CLAUSE.search(clause)
        if match is None:
            out.append(clause)
            continue
        value = _rewrite_clause(match["op"] or "", match["v"], new)
        if value is None:
            continue
        out.append(clause[: match.start("v")] + value + clause[match.end("v") :])
    return ",".join(out)
