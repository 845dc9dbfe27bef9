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

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def load_config(path: str | None) -> Config:
    from overlord import config

    return config.load(path)


def print_json(document: Any) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
