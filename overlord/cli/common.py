"""Options and output helpers shared by every command."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.segment import Segment

from overlord.terminal import clean

if TYPE_CHECKING:
    from overlord.config import Config

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


class SafeConsole(Console):
    """A console whose printed text has its control characters shown escaped: every text
    segment passes through ``terminal.clean`` just before it is written; the console's
    own control sequences (styles, the live display's cursor moves) are kept."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(clean(segment.text), segment.style)
            for segment in buffer
        )


console = SafeConsole(highlight=False)
err_console = SafeConsole(stderr=True, highlight=False)


def say(text: str, *, err: bool = False) -> None:
    """Print plain text: task texts, errors and test output may hold [brackets], which
    must be shown as they are, never read as rich markup."""
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def load_config(path: str | None) -> Config:
    from overlord import config, notify

    loaded = config.load(path)
    notify.install(loaded)  # plans this command moves notify the configured webhooks
    return loaded


def print_json(document: Any) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
