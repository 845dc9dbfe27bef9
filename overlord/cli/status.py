"""``overlord status [P...] [--json] [--fetch]``: every project's repository at a glance
(what it shows: ``status_view``)."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import ConfigOpt, JsonOpt


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        projects: Annotated[
            list[str] | None, typer.Argument(help="Projects to show (default: all).")
        ] = None,
        json: JsonOpt = False,
        fetch: Annotated[
            bool, typer.Option("--fetch", help="Fetch each project's remote first.")
        ] = False,
        config: ConfigOpt = None,
    ) -> None:
        """Per project: branch, clean/dirty, ahead/behind, stale branches, tags, last commit."""
        from overlord.cli.status_view import show

        show(projects, json=json, fetch=fetch, config=config)
