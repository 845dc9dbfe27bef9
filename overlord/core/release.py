"""Release (SPEC §4.4): a coordinated release validated entirely, then planned step by step.

``plan_release`` refuses, before anything changes, a release that cannot work (a bad or
not-greater version, an existing tag, a dirty or mid-merge repository, a missing branch,
an unknown project), each with a one-line error. Otherwise it returns a ``DispatchPlan``
of kind ``release``:

P's tests on the source branch → bump P's version on the source branch → merge source
into target (not for trunk) → annotated tag ``vV`` on the target → for each direct
dependent D: rewrite D's pin of P to admit V on D's source branch (left alone, with a
note, when it already admits V) → the tests of every affected project, independent ones
in parallel → with ``push``: one atomic push per repository, in the push phase that runs
only after a person approved it.

Packaging metadata is read from the branch the step will work on (``git show``), not
from whatever happens to be checked out, so the plan says exactly what each step changes.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from overlord import defaults
from overlord.adapters.git.git import Git
from overlord.bad_input import check_repo
from overlord.core import metadata
from overlord.core.config import ActionKind, Config, ProjectConfig
from overlord.core.graph import DependencyGraph
from overlord.core.plan import DispatchPlan
from overlord.core.plan_builder import PlanBuilder
from overlord.core.registry import Registry
from overlord.errors import GitError, MetadataError, VersionError


@dataclass(frozen=True)
class ReleaseOptions:
    """What ``overlord release P VERSION [...]`` asks for."""

    project: str
    version: str
    execute: bool = False
    push: bool = False
    dependents: bool = True
    source: str | None = None
    target: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pin:
    """What updating one dependent's pin will do (``change`` None: no update step)."""

    project: str
    branch: str
    change: metadata.PinChange | None
    note: str = ""


# --- reading a repository -------------------------------------------------------------


def _pyproject_at(git: Git, branch: str, into: Path) -> bool:
    """Write the pyproject of ``branch`` into directory ``into``; False when it has none."""
    try:
        text = git.run("show", f"refs/heads/{branch}:{metadata.PYPROJECT}")
    except GitError:
        return False
    (into / metadata.PYPROJECT).write_text(text + "\n", encoding="utf-8")
    return True


def _tag_versions(git: Git) -> list[Version]:
    out = []
    for name in git.tags():
        try:
            out.append(metadata.parse_version(name))
        except VersionError:
            continue
    return out


def _remote_has_tag(git: Git, remote: str, tag: str) -> bool:
    """Whether ``tag`` is on ``remote``; an unreachable remote counts as no (the tag step
    checks again before it acts)."""
    try:
        name = git.remote_named(remote)
        if name is None:
            return False
        probe = Git(git.path, timeout=defaults.REMOTE_TAG_CHECK_TIMEOUT)
        return f"refs/tags/{tag}" in probe.ls_remote(name)
    except GitError:
        return False


# --- validation -------------------------------------------------------------------------


@dataclass
class _Released:
    name: str
    spec: ProjectConfig
    version: Version
    current: Version | None
    version_source: str
    dist: str
    source: str
    target: str

    @property
    def tag(self) -> str:
        return f"v{self.version}"


def _released(config: Config, options: ReleaseOptions) -> _Released:
    name = Registry(config).resolve(options.project)
    spec = config.projects[name]
    version = metadata.parse_version(options.version)
    source = options.source or spec.source_branch
    target = options.target or spec.target_branch
    git = check_repo(
        name, spec, [source, target], "create it, or name another with --source/--target"
    )
    with tempfile.TemporaryDirectory(prefix="overlord-release-") as tmp:
        if not _pyproject_at(git, source, Path(tmp)):
            raise MetadataError(
                f"{name}: no {metadata.PYPROJECT} on {source}", "add packaging metadata first"
            )
        vsource = metadata.version_source(Path(tmp))
        if vsource == "none":
            raise MetadataError(
                f"{name}: {metadata.PYPROJECT} on {source} has no version to set",
                'add version = "..." under [project], or make it dynamic',
            )
        current = metadata.current_version(Path(tmp))
        dist = spec.package or metadata.distribution_name(Path(tmp)) or name
    if current is None:  # the version comes from tags
        current = max(_tag_versions(git), default=None)
    if current is not None and version <= current:
        raise VersionError(
            f"{version} is not greater than {name}'s current version {current}",
            f"pick a version above {current}",
        )
    released = _Released(name, spec, version, current, vsource, dist, source, target)
    if git.tag_exists(released.tag):
        raise VersionError(
            f"{name}: tag {released.tag} already exists", "pick another version; nothing changed"
        )
    if _remote_has_tag(git, spec.remote, released.tag):
        raise VersionError(
            f"{name}: tag {released.tag} already exists on remote {spec.remote}",
            "pick another version; nothing changed",
        )
    return released


def _pin(config: Config, project: str, released: _Released) -> _Pin:
    """How ``project``'s pin of the released distribution changes (read from its branch)."""
    spec = config.projects[project]
    branch = spec.source_branch
    git = Git(spec.path)
    with tempfile.TemporaryDirectory(prefix="overlord-release-") as tmp:
        if not _pyproject_at(git, branch, Path(tmp)):
            note = f"{project}: no {metadata.PYPROJECT} on {branch}: no pin of {released.dist} to update"
            return _Pin(project, branch, None, note)
        wanted = canonicalize_name(released.dist)
        if not any(canonicalize_name(r.name) == wanted for r in metadata.dependencies(Path(tmp))):
            note = f"{project}: does not require {released.dist} on {branch}: no pin to update"
            return _Pin(project, branch, None, note)
        change = metadata.rewrite_pin(Path(tmp), released.dist, released.version)
    if not change.changed:
        old = ", ".join(change.old)
        note = f"{project}: pin left alone, {old} already admits {released.version}"
        return _Pin(project, branch, None, note)
    return _Pin(project, branch, change)


# --- the plan ---------------------------------------------------------------------------


def _bump_description(released: _Released) -> str:
    where = {
        "project": "pyproject.toml [project].version",
        "poetry": "pyproject.toml [tool.poetry].version",
    }.get(released.version_source)
    if where is None:
        return (
            f"on {released.source}: the version comes from tags, so only a __version__ literal"
            f" the build reads (if any) is set to {released.version}; commit"
        )
    return (
        f"on {released.source}: {where} {released.current} -> {released.version}"
        f" and the package's __version__ literal (if any); commit"
        f" 'Bump version to {released.version}'"
    )


def plan_release(
    config: Config, options: ReleaseOptions, task_text: str | None = None
) -> DispatchPlan:
    """Validate the release and return its plan (kind ``release``); nothing is changed."""
    released = _released(config, options)
    name, version = released.name, released.version
    source, target = released.source, released.target
    graph = DependencyGraph(config)
    dependents = graph.downstream(name) if options.dependents else []
    affected = graph.affected_by(name) if options.dependents else []
    for project in affected:
        spec = config.projects[project]
        check_repo(project, spec, [spec.source_branch], "create it first")  # bad input (§4.7)
    pins = {d: _pin(config, d, released) for d in dependents}

    flags = (" --push" if options.push else "") + ("" if options.dependents else " --no-dependents")
    builder = PlanBuilder(config, task_text or f"release {name} {version}{flags}", kind="release")
    builder.add(ActionKind.RUN_TESTS, name, f"run the tests of {name} on {source}", branch=source)
    builder.add(
        ActionKind.BUMP_VERSION,
        name,
        _bump_description(released),
        version=str(version),
        branch=source,
        branches=[source],
    )
    if source != target:
        builder.add(
            ActionKind.MERGE,
            name,
            f"merge {source} into {target} (no fast-forward), so {target} carries {version}",
            source=source,
            target=target,
            branches=[source, target],
        )
    tag = builder.add(
        ActionKind.TAG,
        name,
        f"annotated tag {released.tag} on {target}",
        name=released.tag,
        ref=target,
        message=f"Release {version}",
        branches=[target],
    )
    tests: list[str] = []
    updated: list[str] = []
    notes: list[str] = []
    for project in affected:
        branch = config.projects[project].source_branch
        pin = pins.get(project)
        if pin is not None and pin.change is not None:
            old, new = ", ".join(pin.change.old), ", ".join(pin.change.new)
            builder.add(
                ActionKind.UPDATE_DEPENDENCY,
                project,
                f"on {branch}: {old} -> {new} in pyproject.toml;"
                f" commit 'Update {released.dist} to {version}'",
                after=[tag],
                dependency=released.dist,
                version=str(version),
                branch=branch,
                branches=[branch],
            )
            updated.append(project)
        elif pin is not None:
            notes.append(pin.note)
        why = "direct dependent" if project in pins else "depends on it through others"
        tests.append(
            builder.add(
                ActionKind.RUN_TESTS,
                project,
                f"run the tests of {project} on {branch} ({why} of {name})",
                after=[tag],
                branch=branch,
            )
        )
    if options.push:
        _add_pushes(builder, config, released, updated, tests or [tag])
    plan = builder.build()
    plan.notes = notes
    plan.options = {
        **options.as_dict(),
        "project": name,
        "version": str(version),
        "current_version": str(released.current) if released.current else None,
        "tag": released.tag,
        "source": source,
        "target": target,
        "distribution": released.dist,
        "dependents": dependents,
        "affected": affected,
    }
    return plan


def _add_pushes(
    builder: PlanBuilder, config: Config, released: _Released, updated: list[str], after: list[str]
) -> None:
    spec = released.spec
    branches = list(dict.fromkeys([released.source, released.target]))
    builder.add(
        ActionKind.PUSH,
        released.name,
        f"push {', '.join(branches)} and tag {released.tag} to {spec.remote} (atomic)",
        after=after,
        branches=branches,
        tags=[released.tag],
    )
    for project in updated:
        dep = config.projects[project]
        builder.add(
            ActionKind.PUSH,
            project,
            f"push {dep.source_branch} to {dep.remote} (atomic)",
            after=after,
            branches=[dep.source_branch],
        )
