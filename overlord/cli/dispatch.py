"""``overlord dispatch``: parse → plan → show → approval per autonomy → execute."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import ConfigOpt, DetachOpt, JsonOpt, YesOpt, load_config


def register(app: typer.Typer) -> None:
    @app.command()
    def dispatch(
        task: Annotated[
            str, typer.Argument(help='What to do, e.g. "run tests across all projects".')
        ],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
        ] = False,
        yes: YesOpt = False,
        tier: Annotated[
            str | None, typer.Option("--tier", help="Force a model tier for code work.")
        ] = None,
        complexity: Annotated[
            str | None, typer.Option("--complexity", help="low | medium | high, for code work.")
        ] = None,
        detach: DetachOpt = False,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Turn an instruction into a plan, get approval per autonomy, and run it."""
        from overlord import planner
        from overlord.cli.progress import execute_and_report
        from overlord.parser import parse_all
        from overlord.registry import Registry

        config = load_config(config_path)
        if tier is not None:
            from overlord.routing.tiers import tier as parse_tier

            tier = parse_tier(tier).value  # a one-line error listing the tiers
        intents = parse_all(task, Registry(config), complexity=complexity)
        plan = planner.plan_for_all(intents, config, tier=tier)
        code = execute_and_report(
            config, plan, dry_run=dry_run, yes=yes, detach=detach, json_out=json_out
        )
        raise typer.Exit(code)
