"""The ``overlord`` command's entry point.

A plain ``overlord status [--json] [--config PATH]`` starts its git reads first
(``adapters.git.prefetch``) and then runs without typer, whose loading and command
building alone cost more CPU than git's reads of fifty repositories: the arguments are
already read, and ``status_view.show`` and ``outcome.run`` are what the typer command
calls too. Every other command line goes to the typer app.
"""

from __future__ import annotations

import sys


def entrypoint() -> None:
    from overlord.adapters.git import prefetch

    plain = prefetch.begin(sys.argv[1:])
    if plain is None:
        from overlord.cli.app import entrypoint as run

        run()
        return
    from overlord.cli import outcome, status_view

    sys.exit(
        outcome.run(
            lambda: status_view.show(
                None, json=plain.json, fetch=False, config=plain.command, known=plain.known
            )
        )
    )
