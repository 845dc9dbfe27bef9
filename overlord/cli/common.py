"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from overlord.config import Config

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default $OVERLORD_CONFIG, then ~/.atom/overlord.yml).",
        envvar="OVERLORD_CONFIG",
        show_envvar=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Approve this plan in advance (never a push).")
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Do not wait: enqueue, or save as pending.")
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def say(text: str, *, err: bool = False) -> None:
    """Print plain text: task texts, errors and test output may hold [brackets], which
    must be shown as they are, never read as rich markup."""
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def load_config(path: str | None) -> Config:
    from overlord import config

    return config.load(path)


def print_json(document: Any) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
