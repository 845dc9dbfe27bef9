"""``overlord memory search|add``: cross-project memory (SPEC §2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from overlord.cli.common import ConfigOpt, JsonOpt, console, load_config, print_json
from overlord.errors import OverlordError

if TYPE_CHECKING:
    from overlord.memory import Memory
memory_app = typer.Typer(
    rich_markup_mode=None,
    name="memory",
    help="Cross-project memory: releases, dispatch outcomes, failures, decisions.",
    no_args_is_help=True,
)

ProjectOpt = Annotated[
    str | None, typer.Option("--project", "-p", help="Only this project (name or prefix).")
]
CATEGORIES = "release, dispatch, failure, decision, update, pattern"


def _project(config_path: str | None, project: str | None) -> tuple[str, str | None]:
    """The state_url of the configuration and ``project`` resolved to its configured name."""
    from overlord.core.registry import Registry

    config = load_config(config_path)
    assert config.state_url is not None
    name = Registry(config).resolve(project) if project is not None else None
    return config.state_url, name


def _show(memories: list[Memory]) -> None:
    from rich.table import Table
    from rich.text import Text

    if not memories:
        console.print("no memories found")
        return
    table = Table(show_edge=False, pad_edge=False)
    for heading in ("id", "when (UTC)", "category", "project"):
        table.add_column(heading, no_wrap=True)
    table.add_column("content", overflow="fold")
    for entry in memories:
        table.add_row(
            str(entry.id),
            entry.created_at.strftime("%Y-%m-%d %H:%M"),
            entry.category.value,
            Text(entry.project or "-"),
            Text(entry.content),
        )
    console.print(table)


def search_command(
    text: Annotated[
        str, typer.Argument(help="Words to look for (empty: the latest entries).")
    ] = "",
    project: ProjectOpt = None,
    category: Annotated[
        str | None, typer.Option("--category", "-k", help=f"Only this category: {CATEGORIES}.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 20,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Find memories by words, newest first."""
    from overlord import memory

    if limit < 1:
        raise OverlordError(f"--limit must be at least 1, not {limit}")
    kind = memory.parse_category(category) if category is not None else None
    url, name = _project(config, project)
    found = memory.search(url, text, project=name, category=kind, limit=limit)
    if as_json:
        print_json({"memories": [entry.model_dump(mode="json") for entry in found]})
    else:
        _show(found)


def add_command(
    category: Annotated[str, typer.Argument(help=f"One of: {CATEGORIES}.")],
    text: Annotated[str, typer.Argument(help="What happened or what was decided.")],
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Record a memory (e.g. a decision) by hand."""
    from overlord import memory

    kind = memory.parse_category(category)
    url, name = _project(config, project)
    entry = memory.remember(url, kind, text, project=name, metadata={"source": "cli"})
    if as_json:
        print_json({"memory": entry.model_dump(mode="json")})
    else:
        console.print(
            f"remembered #{entry.id} ({entry.category.value}{', ' + name if name else ''})"
        )


memory_app.command("search")(search_command)
memory_app.command("add")(add_command)


def register(app: typer.Typer) -> None:
    app.add_typer(memory_app, name="memory")
