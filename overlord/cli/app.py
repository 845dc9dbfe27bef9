"""The typer application and the one place where errors become exit codes."""

from __future__ import annotations

import copy
import os
import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="overlord",
    help="Coordinate work across many git repositories: status, graph, plans, releases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help, as git and pip print it: rich's help formatter imports its markdown
    # renderer, which alone costs more than the rest of ``overlord --help``
    rich_markup_mode=None,
)


@app.callback()
def _root(
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", metavar="PATH", help="Configuration file, for every command below."
        ),
    ] = None,
) -> None:
    """Coordinate work across many git repositories: status, graph, plans, releases."""
    if config:
        os.environ["OVERLORD_CONFIG"] = config


_COMMAND_MODULES = (
    "overlord.cli.status",
    "overlord.cli.graph",
    "overlord.cli.init",
    "overlord.cli.memory",
    "overlord.cli.autonomy",
    "overlord.cli.dispatch",
    "overlord.cli.plans",
    "overlord.cli.notify",
    "overlord.cli.release",
    "overlord.cli.models",
    "overlord.cli.services",
    "overlord.cli.report",
    "overlord.cli.demo",
)


def _register() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command group not built yet
            raise
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map our errors to exit codes and one-line messages (SPEC §2)."""
    from overlord.cli import outcome

    args = sys.argv[1:] if argv is None else argv
    return outcome.run(lambda: _for(args)(args=args, standalone_mode=False))


def _for(args: list[str]) -> typer.Typer:
    """The app, or a copy holding only the command ``args`` name (nothing before it but
    ``--config``): typer turns every registered command into a click command on each
    run (~20 ms for all of them), and one run needs only its own. Help, errors and
    anything else see the whole app."""
    i = 0
    while i < len(args) and args[i] in ("--config", "-c"):
        i += 2
    if i >= len(args) or args[i].startswith("-"):
        return app
    name = args[i]
    commands = [c for c in app.registered_commands if _command_name(c) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    narrow = copy.copy(app)
    narrow.registered_commands, narrow.registered_groups = commands, groups
    return narrow


def _command_name(info: typer.models.CommandInfo) -> str | None:
    if info.name:
        return info.name
    callback = info.callback
    return callback.__name__.lower().replace("_", "-") if callback else None


def entrypoint() -> None:
    sys.exit(main())
