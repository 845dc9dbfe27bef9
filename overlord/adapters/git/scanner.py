"""The state of every project's repository, scanned in parallel (``overlord status``).

Each repository costs two git calls, run for all repositories at once from a few threads
(``batch``): ``status --porcelain=v2 --branch`` (branch, upstream, ahead/behind, path
counts) and one ``for-each-ref`` over branches and tags (tips, dates, subjects). Only
when some branch is old enough to be stale, and the answer for these very tips is not in
the cache (``merged_cache``), a third: ``for-each-ref --merged`` against the main line.
Reads started before the CLI loaded (``prefetch``) stand in for the first two where they
asked the same. A missing or broken repository becomes a row with ``ok=False`` and the
error text, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from overlord import defaults
from overlord.adapters.git import merged_cache
from overlord.adapters.git.batch import Call, run_all
from overlord.adapters.git.git import Git
from overlord.adapters.git.merged_cache import MergedCache, history_is_fixed
from overlord.adapters.git.porcelain import SEP, merged_args, parse_date, parse_status_v2
from overlord.adapters.git.prefetch import Prefetch, status_reads
from overlord.core.branch_model import main_line
from overlord.core.status_config import StatusConfig, StatusProject
from overlord.errors import OverlordError, ProjectLookupError

if TYPE_CHECKING:
    from overlord.core.config import Config, ProjectConfig

_T = TypeVar("_T")


@dataclass
class BranchInfo:
    name: str
    sha: str
    last_commit: datetime
    age_days: int


@dataclass
class TagInfo:
    name: str
    date: str


@dataclass
class CommitInfo:
    sha: str
    date: str
    subject: str


@dataclass
class ProjectStatus:
    name: str
    path: str
    ok: bool = True
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
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
    stale_branches: list[BranchInfo] = field(default_factory=list)
    old_unmerged: list[BranchInfo] = field(default_factory=list)
    tags: list[TagInfo] = field(default_factory=list)
    last_commit: CommitInfo | None = None


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
    project: ProjectConfig | StatusProject,
    days: int,
    *,
    fetch: bool = False,
    now: datetime | None = None,
) -> ProjectStatus:
    """The status row of one project; errors become ``ok=False`` rows."""
    return _scan([(name, project)], days, fetch=fetch, now=now or datetime.now(UTC))[0]


def scan(
    config: Config | StatusConfig,
    names: list[str] | None = None,
    *,
    fetch: bool = False,
    width: int | None = None,
    early: Prefetch | None = None,
) -> list[ProjectStatus]:
    """Status rows of the named projects (all when ``names`` is None), in config order.

    ``early``: reads started before the configuration was validated (``prefetch``); one
    is used only where this configuration asks exactly the same of the same path.
    """
    if not isinstance(config, StatusConfig):
        config = StatusConfig.of(config)
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
    cache = MergedCache(config.state_dir / defaults.STATUS_CACHE_FILE)
    rows = _scan(
        selected,
        config.stale_branch_days,
        fetch=fetch,
        now=datetime.now(UTC),
        width=width,
        early=early,
        cache=cache,
    )
    cache.save()
    return rows


def _scan(
    selected: Sequence[tuple[str, ProjectConfig | StatusProject]],
    days: int,
    *,
    fetch: bool,
    now: datetime,
    width: int | None = None,
    early: Prefetch | None = None,
    cache: MergedCache | None = None,
) -> list[ProjectStatus]:
    rows = [ProjectStatus(name=name, path=str(project.path)) for name, project in selected]
    gits = [Git(project.path) for _, project in selected]
    if fetch:
        _fetch_all(rows, gits, [project for _, project in selected])
    reads = {i: status_reads(gits[i]) for i, row in enumerate(rows) if row.ok}
    if early is not None:
        for pair in reads.values():
            early.adopt(*pair)
    run_all([call for pair in reads.values() for call in pair], width)
    asks: dict[int, _Refs] = {}
    for i, (status, refs) in reads.items():
        found = _guarded(rows[i], _fill, rows[i], status, refs, gits[i])
        if found is not None:
            asks[i] = found
    merged_calls: dict[int, Call] = {}
    for i, found in asks.items():
        mains = _existing_mains(main_line(selected[i][1].branch_model), found.tips)
        found.mains = mains
        if not mains or not _old_names(found.tips, days, now):
            found.merged = []
            continue
        found.key = merged_cache.key(mains, ((b, t[0]) for b, t in found.tips.items()))
        cacheable = cache is not None and not found.replaced and history_is_fixed(gits[i].path)
        found.merged = cache.get(gits[i].path, found.key) if cacheable and cache else None
        if found.merged is None:
            found.cacheable = cacheable
            merged_calls[i] = Call(gits[i], *merged_args(mains), like=reads[i][0])
    run_all(list(merged_calls.values()), width)
    for i, found in asks.items():
        _guarded(rows[i], _classify, rows[i], found, merged_calls.get(i), days, now, cache)
    return rows


def _guarded(row: ProjectStatus, work: Callable[..., _T], *args: Any) -> _T | None:
    """``work(*args)``; an error becomes the row's (a broken repository must not break
    the whole table)."""
    try:
        return work(*args)
    except OverlordError as exc:
        row.ok, row.error = False, exc.message
    except Exception as exc:
        row.ok, row.error = False, f"{type(exc).__name__}: {exc}"
    return None


def _fetch_all(
    rows: list[ProjectStatus], gits: list[Git], projects: list[ProjectConfig | StatusProject]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def fetch(i: int) -> None:
        try:
            gits[i].fetch(projects[i].remote)
        except OverlordError as exc:
            if not gits[i].path.is_dir():
                raise
            rows[i].warnings.append(f"fetch failed: {exc.message}")

    workers = min(defaults.FETCH_THREADS, len(rows))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="overlord-fetch") as pool:
        list(pool.map(lambda i: _guarded(rows[i], fetch, i), range(len(rows))))


class _Refs:
    """What the refs of one repository said, and what is asked of them next."""

    def __init__(self, tips: dict[str, tuple[str, datetime]], replaced: bool) -> None:
        self.tips, self.replaced = tips, replaced
        self.mains: list[str] = []
        self.key = ""
        self.merged: list[str] | None = None
        self.cacheable = False


def _fill(row: ProjectStatus, status_call: Call, refs_call: Call, git: Git) -> _Refs:
    status = parse_status_v2(status_call.output())
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
    replaced = False
    for line in refs_call.output().splitlines():
        parts = line.split(SEP, 4)
        if len(parts) != 5:
            continue
        ref, sha, committed, created, subject = parts
        if ref.startswith("refs/heads/"):
            branch = ref.removeprefix("refs/heads/")
            tips[branch] = (sha, parse_date(committed))
            subjects[branch] = subject
        elif ref.startswith("refs/tags/"):
            if created:
                tags.append((parse_date(created), ref.removeprefix("refs/tags/"), created))
        else:
            replaced = True
    tags.sort(reverse=True)
    row.tags = [TagInfo(name=tag, date=date) for _, tag, date in tags[:3]]

    if row.branch is not None and row.branch in tips:
        sha, date = tips[row.branch]
        row.last_commit = CommitInfo(sha=sha, date=date.isoformat(), subject=subjects[row.branch])
    elif status["oid"] is not None:
        row.last_commit = CommitInfo(**git.last_commit())
    return _Refs(tips, replaced)


def _classify(
    row: ProjectStatus,
    found: _Refs,
    call: Call | None,
    days: int,
    now: datetime,
    cache: MergedCache | None,
) -> None:
    merged = found.merged
    if merged is None:
        assert call is not None
        merged = [line for line in call.output().splitlines() if line]
        if found.cacheable and cache is not None:
            cache.put(call.git.path, found.key, merged)
    row.stale_branches, row.old_unmerged = classify_branches(
        found.tips, merged, current=row.branch, main_branches=found.mains, days=days, now=now
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):  # as pydantic writes one: UTC as "Z"
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value


def as_json(rows: Iterable[ProjectStatus]) -> dict[str, Any]:
    """The ``--json`` document of ``overlord status``."""

    def plain(items: list[tuple[str, Any]]) -> dict[str, Any]:
        return {key: _json_value(value) for key, value in items}

    return {"projects": [asdict(row, dict_factory=plain) for row in rows]}
