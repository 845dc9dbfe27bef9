"""Python packaging metadata: read it and edit it in place (SPEC §4.4).

Edits go through ``tomlkit`` so the pyproject keeps its formatting and comments; versions
and requirements are understood with ``packaging``. Supported layouts: PEP 621
``[project]`` (dependencies and optional groups, PEP 735 ``[dependency-groups]``) and
Poetry ``[tool.poetry]``. A version that comes from tags (``dynamic``) is never written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import String

from overlord.core.paths import inside
from overlord.core.specifiers import rewrite_specifier
from overlord.errors import MetadataError, VersionError

PYPROJECT = "pyproject.toml"
_VERSION_HINT = "use a PEP 440 / semver version such as 0.2.0, 1.0.0rc1 or v1.2.3"
_VERSION_LITERAL = re.compile(
    r"""^(?P<head>__version__\s*(?::\s*str\s*)?=\s*)(?P<q>['"])(?P<v>[^'"\n]*)(?P=q)""",
    re.MULTILINE,
)
_NAME_EXTRAS = re.compile(r"^\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?")
_SKIP_DIRS = {"tests", "test", "docs", "doc", "examples", "scripts", "build", "dist", "src"}


def read_pyproject(repo: Path) -> tomlkit.TOMLDocument:
    """The parsed ``pyproject.toml`` of ``repo``; MetadataError when missing or invalid."""
    path = Path(repo) / PYPROJECT
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetadataError(
            f"{path}: no such file", "add a pyproject.toml to the project"
        ) from None
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise MetadataError(f"{path}: invalid TOML: {exc}", "fix the file by hand") from None


def _table(doc: Any, *keys: str) -> Any:
    """doc[k1][k2]... or None when any level is missing or not a table."""
    node = doc
    for key in keys:
        if not hasattr(node, "get"):
            return None
        node = node.get(key)
        if node is None:
            return None
    return node


def distribution_name(repo: Path) -> str | None:
    """``[project].name`` (or ``[tool.poetry].name``); None without a pyproject or a name."""
    if not (Path(repo) / PYPROJECT).is_file():
        return None
    doc = read_pyproject(repo)
    name = _table(doc, "project", "name") or _table(doc, "tool", "poetry", "name")
    return str(name) if name else None


def _source(doc: Any) -> str:
    if _table(doc, "project", "version") is not None:
        return "project"
    poetry = _table(doc, "tool", "poetry", "version") is not None
    if "version" in (_table(doc, "project", "dynamic") or []):
        # Poetry 2 may keep the version in [tool.poetry] unless a VCS plugin supplies it.
        plugin = _table(doc, "tool", "poetry-dynamic-versioning") is not None
        return "poetry" if poetry and not plugin else "dynamic"
    return "poetry" if poetry else "none"


def version_source(repo: Path) -> str:
    """Where the version lives: ``project``, ``poetry``, ``dynamic`` or ``none``."""
    return _source(read_pyproject(repo))


def current_version(repo: Path) -> Version | None:
    """The version written in the pyproject, or None when it is dynamic or absent."""
    doc = read_pyproject(repo)
    source = _source(doc)
    if source not in ("project", "poetry"):
        return None
    raw = _table(doc, "project", "version") or _table(doc, "tool", "poetry", "version")
    try:
        return parse_version(str(raw))
    except VersionError as exc:
        raise MetadataError(f"{Path(repo) / PYPROJECT}: version: {exc.message}") from None


def parse_version(text: str | Version) -> Version:
    """A PEP 440 version from user text; a leading ``v`` is accepted (``v0.2.0`` → 0.2.0)."""
    if isinstance(text, Version):
        return text
    raw = str(text).strip()
    cleaned = raw[1:] if raw[:1] in ("v", "V") and raw[1:2].isdigit() else raw
    try:
        return Version(cleaned)
    except InvalidVersion:
        raise VersionError(f"{raw!r} is not a valid version", _VERSION_HINT) from None


def _requirement_arrays(doc: Any) -> Iterator[tuple[str, Any]]:
    """(label, tomlkit array) for every PEP 621/735 list of requirement strings."""
    deps = _table(doc, "project", "dependencies")
    if deps is not None:
        yield "project.dependencies", deps
    for group, reqs in (_table(doc, "project", "optional-dependencies") or {}).items():
        yield f"project.optional-dependencies.{group}", reqs
    for group, reqs in (_table(doc, "dependency-groups") or {}).items():
        yield f"dependency-groups.{group}", reqs


def _poetry_tables(doc: Any) -> Iterator[tuple[str, Any]]:
    poetry = _table(doc, "tool", "poetry")
    if poetry is None:
        return
    for key in ("dependencies", "dev-dependencies"):
        if _table(poetry, key) is not None:
            yield f"tool.poetry.{key}", poetry[key]
    for group, body in (_table(poetry, "group") or {}).items():
        if _table(body, "dependencies") is not None:
            yield f"tool.poetry.group.{group}.dependencies", body["dependencies"]


def _requirement(item: str, where: str) -> Requirement:
    try:
        return Requirement(item)
    except InvalidRequirement as exc:
        raise MetadataError(f"{where}: invalid requirement {item!r}: {exc}") from None


def dependencies(repo: Path) -> list[Requirement]:
    """Every requirement: [project] dependencies, optional groups, dependency groups, Poetry."""
    doc = read_pyproject(repo)
    path = Path(repo) / PYPROJECT
    out: list[Requirement] = []
    for label, reqs in _requirement_arrays(doc):
        out += [_requirement(i, f"{path}: {label}") for i in reqs if isinstance(i, str)]
    for label, table in _poetry_tables(doc):
        for name, spec in table.items():
            extras = spec.get("extras") if hasattr(spec, "get") else None  # ^/~ are not PEP 440
            text = f"{name}[{','.join(map(str, extras))}]" if extras else name
            if canonicalize_name(name) != "python":
                out.append(_requirement(text, f"{path}: {label}"))
    return out


def depends_on_names(repo: Path, known: dict[str, str]) -> list[str]:
    """Project names this repo depends on; ``known`` maps canonical distribution → project."""
    own = distribution_name(repo)
    own_canon = canonicalize_name(own) if own else None
    out: list[str] = []
    for req in dependencies(repo):
        canon = canonicalize_name(req.name)
        if canon == own_canon or canon not in known:
            continue
        if known[canon] not in out:
            out.append(known[canon])
    return out


def _module_candidates(repo: Path, dist: str | None) -> list[Path]:
    files = ("__init__.py", "_version.py", "__about__.py", "version.py")
    out: list[Path] = []
    if dist:
        module = canonicalize_name(dist).replace("-", "_").replace(".", "_")
        for base in (repo / module, repo / "src" / module):
            out += [base / f for f in files]
    if not any(p.is_file() for p in out):
        packages = [
            d
            for base in (repo, repo / "src")
            if base.is_dir()
            for d in sorted(base.iterdir())
            if d.is_dir() and d.name not in _SKIP_DIRS and (d / "__init__.py").is_file()
        ]
        if len(packages) == 1:
            out += [packages[0] / f for f in files]
    return [p for p in out if p.is_file()]


def _dynamic_version_file(repo: Path, doc: Any) -> Path | None:
    """The file holding the version when a build backend reads it from a literal."""
    attr = _table(doc, "tool", "setuptools", "dynamic", "version", "attr")
    if isinstance(attr, str) and "." in attr:
        module = attr.rsplit(".", 1)[0].replace(".", "/")
        for base in (repo, repo / "src"):
            for cand in (base / module / "__init__.py", base / f"{module}.py"):
                if cand.is_file():
                    return cand
    hatch = _table(doc, "tool", "hatch", "version")
    if hatch is not None and hatch.get("source", "regex") == "regex" and hatch.get("path"):
        cand = repo / str(hatch["path"])
        return cand if cand.is_file() else None
    return None


def _write_literal(path: Path, version: Version) -> bool:
    text = path.read_text(encoding="utf-8")
    new = _VERSION_LITERAL.sub(lambda m: f"{m['head']}{m['q']}{version}{m['q']}", text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def _set_string(table: Any, key: str | int, value: str) -> None:
    old = table[key]
    literal = isinstance(old, String) and old.type.is_literal()
    table[key] = tomlkit.string(value, literal=literal)


def set_version(repo: Path, version: str | Version) -> list[Path]:
    """Write ``version`` into the pyproject and a ``__version__`` literal; the files changed.

    Nothing is written (``[]``) when the version comes from tags (``dynamic``).
    """
    repo = Path(repo)
    new = parse_version(version)
    doc = read_pyproject(repo)
    source = _source(doc)
    path = repo / PYPROJECT
    changed: list[Path] = []
    if source == "dynamic":
        literal = _dynamic_version_file(repo, doc)
        return [literal] if literal and _write_literal(inside(repo, literal), new) else []
    if source == "none":
        raise MetadataError(
            f"{path}: no version to set ([project].version is absent and not dynamic)",
            'add version = "..." under [project]',
        )
    table = doc["project"] if source == "project" else doc["tool"]["poetry"]
    if str(table["version"]) != str(new):
        _set_string(table, "version", str(new))
        inside(repo, path).write_text(tomlkit.dumps(doc), encoding="utf-8")
        changed.append(path)
    for candidate in _module_candidates(repo, distribution_name(repo)):
        if _write_literal(inside(repo, candidate), new):
            changed.append(candidate)
    return changed


@dataclass
class PinChange:
    """What ``rewrite_pin`` did to one repo's requirements on a distribution."""

    file: Path
    changed: bool
    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    reason: str = ""


def _rewrite_requirement(text: str, new: Version, where: str) -> tuple[str, str]:
    """(new requirement text, reason when unchanged) for a PEP 508 string."""
    req = Requirement(text)
    if req.url:
        return text, "a URL requirement has no version to rewrite"
    if not req.specifier:
        return text, "no version specifier (admits any version)"
    head = _NAME_EXTRAS.match(text)
    start = head.end() if head else 0
    end = text.find(";", start)
    end = len(text) if end < 0 else end
    result = text[:start] + rewrite_specifier(text[start:end], new) + text[end:]
    if not _requirement(result, where).specifier.contains(new, prereleases=True):
        raise MetadataError(f"{where}: cannot make {text!r} admit {new}", "edit it by hand")
    return result, "" if result != text else f"already pinned to admit {new}"


def rewrite_pin(repo: Path, dependency_dist: str, new_version: str | Version) -> PinChange:
    """Rewrite every requirement on ``dependency_dist`` to admit ``new_version``.

    The operator of each pin is kept (``>=0.1.0`` → ``>=0.2.0``, ``~=0.1`` → ``~=0.2``,
    ``>=0.1,<0.2`` → ``>=0.2,<0.3``, Poetry ``^0.1.0`` → ``^0.2.0``); extras and markers
    are kept. The file is written only when something changed.
    """
    path = Path(repo) / PYPROJECT
    new = parse_version(new_version)
    wanted = canonicalize_name(dependency_dist)
    doc = read_pyproject(repo)
    change = PinChange(file=path, changed=False)
    reasons: list[str] = []
    for label, reqs in _requirement_arrays(doc):
        for index, item in enumerate(reqs):
            if not isinstance(item, str):
                continue
            if canonicalize_name(_requirement(item, f"{path}: {label}").name) != wanted:
                continue
            text, reason = _rewrite_requirement(str(item), new, f"{path}: {label}")
            change.old.append(str(item))
            change.new.append(text)
            if text != str(item):
                _set_string(reqs, index, text)
            elif reason not in reasons:
                reasons.append(reason)
    for _label, table in _poetry_tables(doc):
        for name in list(table.keys()):
            if canonicalize_name(name) != wanted:
                continue
            holder, key = (table[name], "version") if hasattr(table[name], "get") else (table, name)
            if holder.get(key) is None:
                continue
            spec = str(holder[key])
            text = rewrite_specifier(spec, new) if spec.strip() not in ("", "*") else spec
            change.old.append(f"{name} = {spec}")
            change.new.append(f"{name} = {text}")
            if text != spec:
                _set_string(holder, key, text)
            else:
                reasons.append(f"{name} = {spec!r} already admits {new}")
    if not change.old:
        hint = "nothing to update; check the project's depends_on"
        raise MetadataError(f"{path}: does not depend on {dependency_dist}", hint)
    change.changed = change.old != change.new
    if change.changed:
        inside(repo, path).write_text(tomlkit.dumps(doc), encoding="utf-8")
    else:
        change.reason = "; ".join(reasons)
    return change
