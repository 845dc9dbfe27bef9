"""What every command prints with and loads first, without typer: the consoles (made on
first use), plain text, one JSON document, the configuration. ``overlord status`` runs
on these alone (``cli.entry``); ``common`` adds typer's shared options."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from overlord.core.config import Config


class _LazyConsole:
    """A ``SafeConsole`` made on first use: ``--json`` output and ``--help`` never pay for
    importing rich's console."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from overlord.cli.safe_console import SafeConsole

            self._console = SafeConsole(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def rich_console(lazy: Console) -> Console:
    """The real console behind ``console`` / ``err_console`` (for rich's Live, Prompt)."""
    return lazy.get() if isinstance(lazy, _LazyConsole) else lazy


console: Console = _LazyConsole(highlight=False)  # type: ignore[assignment]
err_console: Console = _LazyConsole(stderr=True, highlight=False)  # type: ignore[assignment]


def say(text: str, *, err: bool = False) -> None:
    """Print plain text: task texts, errors and test output may hold [brackets], which
    must be shown as they are, never read as rich markup."""
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def load_config(path: str | None) -> Config:
    from overlord.core import config

    loaded = config.load(path)
    # plans this command moves notify the configured webhooks; with none configured there
    # is nothing to install (nor to forget, unless notify was loaded): a read command such
    # as ``status`` does not import it
    if loaded.notify or "overlord.notify" in sys.modules:
        from overlord import notify

        notify.install(loaded)
    return loaded


def print_json(document: Any) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
