"""``overlord dispatch``: parse → plan → show → approval per autonomy → execute."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from overlord.cli.common import ConfigOpt, DetachOpt, JsonOpt, YesOpt, load_config


class _WithInstructions(TyperCommand):
    """``dispatch --help`` ends with the instructions the parser understands: every
    kind's forms (``overlord.kinds``), read only when the help is shown."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:  # typer's own click types
        from overlord.core.parser import LIST_HELP, SUPPORTED_FORMS

        with formatter.section("Instructions"):
            formatter.write_text(f"{LIST_HELP}.")
            for form in SUPPORTED_FORMS:
                formatter.write_text(form)
        super().format_epilog(ctx, formatter)


def register(app: typer.Typer) -> None:
    @app.command(cls=_WithInstructions)
    def dispatch(
        task: Annotated[
            str, typer.Argument(help='What to do, e.g. "run tests across all projects".')
        ],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
        ] = False,
        yes: YesOpt = False,
        tier: Annotated[
            str | None,
            typer.Option("--tier", help="Force a model tier for code work and translation."),
        ] = None,
        complexity: Annotated[
            str | None,
            typer.Option(
                "--complexity",
                help="low | medium | high, for code work (and where a translation routes).",
            ),
        ] = None,
        detach: DetachOpt = False,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Turn an instruction into a plan, get approval per autonomy, and run it.

        Several instructions may be separated by ';' or new lines. Text no supported form
        matches is translated by the planning model (when one is configured and up); the
        plan shows what it was "understood as" and runs only with a person's approval
        (--yes does not cover a translation).
        """
        from overlord.cli.instructions import plan_text
        from overlord.cli.progress import execute_and_report

        config = load_config(config_path)
        if tier is not None:
            from overlord.routing.tiers import tier as parse_tier

            tier = parse_tier(tier).value  # a one-line error listing the tiers
        plan = plan_text(config, task, tier=tier, complexity=complexity)
        code = execute_and_report(
            config, plan, dry_run=dry_run, yes=yes, detach=detach, json_out=json_out
        )
        raise typer.Exit(code)
