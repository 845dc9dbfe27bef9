"""The typer application and the one place where errors become exit codes."""

from __future__ import annotations

import copy
import os
import sys
from typing import Annotated

import typer

from overlord.errors import EXIT_BAD_INPUT, OverlordError

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
    from overlord.cli.common import err_console

    try:
        args = sys.argv[1:] if argv is None else argv
        rc = _for(args)(args=args, standalone_mode=False)
    except OverlordError as exc:
        from rich.text import Text

        from overlord.core.secrets import redact

        # messages quote user input and tool output: never read them as markup; they
        # may quote a URL or a command's output: never print a secret (SPEC §4.6)
        message = Text.assemble(("error:", "bold red"), " ", redact(exc.message))
        err_console.print(message, soft_wrap=True)
        if exc.hint:
            err_console.print(
                Text.assemble(("hint:", "dim"), " ", redact(exc.hint)), soft_wrap=True
            )
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:
        # Usage errors (missing argument, bad option value) are click exceptions; typer
        # may ship its own copy of click, so recognise them by shape, not by class.
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):
            show()
            return EXIT_BAD_INPUT
        raise
    finally:
        _settle_notifications()
    return rc if isinstance(rc, int) else 0


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


def _settle_notifications() -> None:
    """Before the command returns: let webhook deliveries this command started finish
    (at most ``defaults.WEBHOOK_EXIT_WAIT`` s; one still running then is recorded as cut
    short)."""
    webhooks = sys.modules.get("overlord.webhooks")
    if webhooks is None or not webhooks.pending():
        return
    if not webhooks.wait_idle(1.0):
        from overlord import defaults
        from overlord.cli.common import err_console

        err_console.print(
            f"waiting for {webhooks.pending()} webhook delivery(ies), "
            f"at most {defaults.WEBHOOK_EXIT_WAIT:.0f} s"
        )
        webhooks.drain(defaults.WEBHOOK_EXIT_WAIT - 1.0)


def entrypoint() -> None:
    sys.exit(main())
