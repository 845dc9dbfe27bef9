"""Options and output helpers shared by every command (the output helpers live in
``basics``, which loads without typer)."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.basics import (  # noqa: F401  (every command imports them from here)
    console,
    err_console,
    load_config,
    print_json,
    rich_console,
    say,
)

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="Configuration file (default $OVERLORD_CONFIG, then ~/.atom/overlord.yml).",
        envvar="OVERLORD_CONFIG",
        show_envvar=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]
YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Approve this plan in advance (never a push, nor a translation)."
    ),
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Do not wait: enqueue, or save as pending.")
]
