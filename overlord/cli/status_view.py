"""What ``overlord status`` shows: the table of every project's repository, or its JSON
document. Typer-free: the command (``cli.status``) and the path past typer for a plain
``overlord status`` (``cli.entry``) both call ``show``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from overlord.adapters.git.scanner import ProjectStatus
    from overlord.core.status_config import StatusConfig


def _age(iso: str, now: datetime) -> str:
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return "?"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("mo", 30 * 86400), ("d", 86400), ("h", 3600)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def _state(row: ProjectStatus) -> str:
    if not row.dirty:
        return "[green]clean[/]"
    parts = [
        f"{n}{label}"
        for n, label in (
            (row.conflicted, "!"),
            (row.staged, "+"),
            (row.modified, "~"),
            (row.untracked, "?"),
        )
        if n
    ]
    return f"[yellow]dirty[/]({' '.join(parts)})"


def _sync(row: ProjectStatus) -> str:
    if row.upstream is None:
        return "[dim]no upstream[/]" if not row.detached else "[dim]-[/]"
    if not row.ahead and not row.behind:
        return "[green]=[/]"
    out = []
    if row.ahead:
        out.append(f"↑{row.ahead}")
    if row.behind:
        out.append(f"[yellow]↓{row.behind}[/]")
    return " ".join(out)


def render(rows: list[ProjectStatus]) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from overlord.cli.basics import console

    now = datetime.now(UTC)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("project", "branch", "state", "sync", "stale", "tags"):
        table.add_column(column, no_wrap=True)
    table.add_column("last commit", overflow="ellipsis", max_width=72)
    for row in rows:
        name = escape(row.name)
        if not row.ok:
            table.add_row(
                f"[red]{name}[/]",
                "",
                "[red]error[/]",
                "",
                "",
                "",
                f"[red]{escape(row.error or '')}[/]",
            )
            continue
        branch = escape(row.branch) if row.branch else "[yellow](detached)[/]"
        stale = str(len(row.stale_branches)) if row.stale_branches else "0"
        if row.old_unmerged:
            stale += f" [dim](+{len(row.old_unmerged)} unmerged)[/]"
        tags = ", ".join(escape(t.name) for t in row.tags) or "[dim]-[/]"
        last = "[dim](no commits)[/]"
        if row.last_commit:
            last = f"{_age(row.last_commit.date, now)} {escape(row.last_commit.subject)}"
        cell = Text.from_markup(last, overflow="ellipsis")
        cell.no_wrap = True
        table.add_row(name, branch, _state(row), _sync(row), stale, tags, cell)
    console.print(table)
    for row in rows:
        for warning in row.warnings:
            console.print(f"[yellow]warning:[/] {escape(row.name)}: {escape(warning)}")


def show(
    projects: list[str] | None,
    *,
    json: bool,
    fetch: bool,
    config: str | None,
    known: StatusConfig | None = None,
) -> None:
    """Scan the projects (all, or those ``projects`` names) and print them.

    ``known``: what a plain ``status`` found in the configuration's digest for the file's
    current bytes (``core.status_config``), used instead of validating it again.
    """
    from overlord.adapters.git import prefetch, scanner
    from overlord.cli.basics import print_json

    early = prefetch.started()  # reads begun before the command line loaded, if any
    if known is not None and not projects:
        rows = scanner.scan(known, fetch=fetch, early=early)
    else:
        from overlord.cli.basics import load_config
        from overlord.core import status_config
        from overlord.core.registry import Registry

        cfg = load_config(config)
        names = Registry(cfg).resolve_all(projects) if projects else None
        rows = scanner.scan(cfg, names, fetch=fetch, early=early)
        status_config.remember(cfg)
    if json:
        print_json(scanner.as_json(rows))
    else:
        render(rows)
