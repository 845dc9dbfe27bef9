"""The state of every project's repository, scanned in parallel (``overlord status``).

Each repository costs about three git calls: ``status --porcelain=v2 --branch`` (branch,
upstream, ahead/behind, path counts), one ``for-each-ref`` over branches and tags (tips,
dates, subjects) and, only when some branch is old enough to be stale, a
``for-each-ref --merged`` against the main line. A missing or broken repository becomes a
row with ``ok=False`` and the error text, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from overlord import defaults
from overlord.adapters.git.git import Git, parse_date, parse_status_v2
from overlord.core.config import BranchModel, Config, ProjectConfig
from overlord.errors import OverlordError, ProjectLookupError

_SEP = "\x1f"
_REF_FORMAT = _SEP.join(
    (
        "%(refname)",
        "%(objectname)",
        "%(committerdate:iso-strict)",
        "%(creatordate:iso-strict)",
        "%(contents:subject)",
    )
)


class BranchInfo(BaseModel):
    name: str
    sha: str
    last_commit: datetime
    age_days: int


class TagInfo(BaseModel):
    name: str
    date: str


class CommitInfo(BaseModel):
    sha: str
    date: str
    subject: str


class ProjectStatus(BaseModel):
    name: str
    path: str
    ok: bool = True
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    branch: str | None = None
    detached: bool = False
    dirty: bool = False
    staged: int = 0
    modified: int = 0
    untracked: int = 0
    conflicted: int = 0
    upstream: str | None = None
    ahead: int = 0
    behind: int = 0
    stale_branches: list[BranchInfo] = Field(default_factory=list)
    old_unmerged: list[BranchInfo] = Field(default_factory=list)
    tags: list[TagInfo] = Field(default_factory=list)
    last_commit: CommitInfo | None = None


def main_line(project: ProjectConfig) -> list[str]:
    """The branches a finished branch is merged into, by branch model."""
    if project.branch_model is BranchModel.DEVELOP_MAIN:
        return ["develop", "main"]
    return ["main"]


def _existing_mains(wanted: Sequence[str], branches: Iterable[str]) -> list[str]:
    present = set(branches)
    found = [b for b in wanted if b in present]
    if not found and "master" in present:  # an older repository without main
        found = ["master"]
    return found


def classify_branches(
    tips: dict[str, tuple[str, datetime]],
    merged: Iterable[str],
    *,
    current: str | None,
    main_branches: Sequence[str],
    days: int,
    now: datetime | None = None,
) -> tuple[list[BranchInfo], list[BranchInfo]]:
    """(stale = old and merged, old_unmerged = old and not merged), oldest first.

    The current branch, the main line and ``defaults.PROTECTED_BRANCHES`` are never listed.
    """
    now = now or datetime.now(UTC)
    limit = timedelta(days=days)
    merged_set = set(merged)
    skip = {current, *main_branches, *defaults.PROTECTED_BRANCHES}
    stale: list[BranchInfo] = []
    unmerged: list[BranchInfo] = []
    for name, (sha, date) in sorted(tips.items(), key=lambda item: item[1][1]):
        age = now - date
        if name in skip or age <= limit:
            continue
        info = BranchInfo(name=name, sha=sha, last_commit=date, age_days=age.days)
        (stale if name in merged_set else unmerged).append(info)
    return stale, unmerged


def _old_names(tips: dict[str, tuple[str, datetime]], days: int, now: datetime) -> list[str]:
    limit = timedelta(days=days)
    return [name for name, (_, date) in tips.items() if now - date > limit]


def stale_branches(
    git: Git,
    main_branches: Sequence[str],
    days: int,
    now: datetime | None = None,
    *,
    current: str | None = None,
) -> list[BranchInfo]:
    """Local branches merged into ``main_branches`` whose tip is older than ``days``.

    Never the checked-out branch (``current`` if given, else asked from git), the main
    line itself, nor ``defaults.PROTECTED_BRANCHES``.
    """
    now = now or datetime.now(UTC)
    tips = git.branch_tips()
    mains = _existing_mains(main_branches, tips)
    if not mains or not _old_names(tips, days, now):
        return []
    if current is None:
        current = git.current_branch()
    merged = git.merged_into(*mains)
    stale, _ = classify_branches(
        tips, merged, current=current, main_branches=mains, days=days, now=now
    )
    return stale


def scan_project(
    name: str,
    project: ProjectConfig,
    days: int,
    *,
    fetch: bool = False,
    now: datetime | None = None,
) -> ProjectStatus:
    """The status row of one project; errors become ``ok=False`` rows."""
    row = ProjectStatus(name=name, path=str(project.path))
    try:
        _fill(row, Git(project.path), project, days, fetch=fetch, now=now or datetime.now(UTC))
    except OverlordError as exc:
        row.ok, row.error = False, exc.message
    except Exception as exc:  # a broken repository must not break the whole table
        row.ok, row.error = False, f"{type(exc).__name__}: {exc}"
    return row


def _fill(
    row: ProjectStatus, git: Git, project: ProjectConfig, days: int, *, fetch: bool, now: datetime
) -> None:
    if fetch:
        try:
            git.fetch(project.remote)
        except OverlordError as exc:
            if not git.path.is_dir():
                raise
            row.warnings.append(f"fetch failed: {exc.message}")
    # --no-optional-locks: a read never takes the index lock (nor rewrites the index) under
    # the person's own git commands
    status = parse_status_v2(
        git.run("--no-optional-locks", "status", "--porcelain=v2", "--branch", "-unormal")
    )
    counts = status["counts"]
    row.branch = status["head"]
    row.detached = status["head"] is None and status["oid"] is not None
    row.upstream = status["upstream"]
    row.ahead, row.behind = status["ahead"], status["behind"]
    row.staged, row.modified = counts["staged"], counts["modified"]
    row.untracked, row.conflicted = counts["untracked"], counts["conflicted"]
    row.dirty = any(counts.values())

    tips: dict[str, tuple[str, datetime]] = {}
    subjects: dict[str, str] = {}
    tags: list[tuple[datetime, str, str]] = []
    for line in git.run(
        "for-each-ref", f"--format={_REF_FORMAT}", "refs/heads", "refs/tags"
    ).splitlines():
        parts = line.split(_SEP, 4)
        if len(parts) != 5:
            continue
        ref, sha, committed, created, subject = parts
        if ref.startswith("refs/heads/"):
            branch = ref.removeprefix("refs/heads/")
            tips[branch] = (sha, parse_date(committed))
            subjects[branch] = subject
        elif created:
            tags.append((parse_date(created), ref.removeprefix("refs/tags/"), created))
    tags.sort(reverse=True)
    row.tags = [TagInfo(name=tag, date=date) for _, tag, date in tags[:3]]

    if row.branch is not None and row.branch in tips:
        sha, date = tips[row.branch]
        row.last_commit = CommitInfo(sha=sha, date=date.isoformat(), subject=subjects[row.branch])
    elif status["oid"] is not None:
        row.last_commit = CommitInfo(**git.last_commit())

    mains = _existing_mains(main_line(project), tips)
    merged: list[str] = []
    if mains and _old_names(tips, days, now):
        merged = git.merged_into(*mains)
    row.stale_branches, row.old_unmerged = classify_branches(
        tips, merged, current=row.branch, main_branches=mains, days=days, now=now
    )


def scan(
    config: Config,
    names: list[str] | None = None,
    *,
    fetch: bool = False,
    max_workers: int | None = None,
) -> list[ProjectStatus]:
    """Status rows of the named projects (all when ``names`` is None), in config order."""
    if names is not None:
        unknown = [n for n in names if n not in config.projects]
        if unknown:
            raise ProjectLookupError(
                f"unknown project {unknown[0]!r}",
                f"known projects: {', '.join(sorted(config.projects)) or 'none'}",
            )
    wanted = set(names) if names is not None else None
    selected = [(n, p) for n, p in config.projects.items() if wanted is None or n in wanted]
    if not selected:
        return []
    days = config.dispatch.stale_branch_days
    now = datetime.now(UTC)
    workers = max_workers or min(defaults.SCAN_THREADS, len(selected))
    if workers <= 1 or len(selected) == 1:
        return [scan_project(n, p, days, fetch=fetch, now=now) for n, p in selected]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="overlord-scan") as pool:
        return list(
            pool.map(
                lambda item: scan_project(item[0], item[1], days, fetch=fetch, now=now), selected
            )
        )


def as_json(rows: Iterable[ProjectStatus]) -> dict[str, Any]:
    """The ``--json`` document of ``overlord status``."""
    return {"projects": [row.model_dump(mode="json") for row in rows]}
