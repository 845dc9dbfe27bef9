"""`overlord init [DIR]`: find git repos, infer their graph, write a configuration."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import ConfigOpt, JsonOpt


def init(
    directory: Annotated[
        str, typer.Argument(metavar="DIR", help="Directory holding your git repositories.")
    ] = ".",
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing configuration file.")
    ] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find git repos under DIR, infer depends_on from their packaging metadata, write a config."""
    from pathlib import Path

    from overlord import discovery
    from overlord.cli.common import console, print_json
    from overlord.core import config as config_mod
    from overlord.errors import ConfigError

    target = config_mod.config_path(config)
    if target.exists() and not force:
        raise ConfigError(
            f"{target}: a configuration file already exists", "pass --force to overwrite it"
        )
    root = Path(directory).expanduser().resolve()
    found = discovery.discover(root)
    if not found:
        raise ConfigError(
            f"{root}: no git repositories found", "pass the directory that holds your repos"
        )
    text = discovery.render_config(found, root)
    config_mod.parse(text, target)  # what we write must load
    discovery.write_config(target, text, force=force)

    if json_out:
        print_json(
            {
                "config": str(target),
                "workspace": str(root),
                "projects": [item.as_dict() for item in found],
            }
        )
        return
    from rich.table import Table

    table = Table(title=f"Found {len(found)} repositories under {root}")
    for column in ("project", "package", "branch model", "remote", "role", "depends on"):
        table.add_column(column)
    for item in found:
        table.add_row(
            item.name,
            item.distribution or "-",
            item.branch_model,
            item.remote or "-",
            item.role,
            ", ".join(item.depends_on) or "-",
        )
    console.print(table)
    for item in found:
        for problem in item.problems:
            console.print(f"[yellow]warning:[/] {item.name}: {problem}")
    console.print(f"Wrote {target}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
