"""The ``overlord`` command's entry point: a plain ``overlord status [--json] [--config
PATH]`` starts its git reads first (``adapters.git.prefetch``), before the command line
(typer, pydantic, the configuration's models) loads."""

from __future__ import annotations

import sys


def entrypoint() -> None:
    from overlord.adapters.git import prefetch

    prefetch.begin(sys.argv[1:])
    from overlord.cli.app import entrypoint as run

    run()
