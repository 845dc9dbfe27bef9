"""``overlord release P VERSION``: show the plan of a coordinated release, or run it."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import (
    ConfigOpt,
    DetachOpt,
    JsonOpt,
    console,
    load_config,
    print_json,
    say,
)


def register(app: typer.Typer) -> None:
    @app.command()
    def release(
        project: Annotated[str, typer.Argument(help="The project to release (name or prefix).")],
        version: Annotated[str, typer.Argument(help="The new version, e.g. 0.2.0 or v1.0.0rc1.")],
        execute: Annotated[
            bool, typer.Option("--execute", help="Run the plan (without it: only show it).")
        ] = False,
        push: Annotated[
            bool,
            typer.Option("--push", help="Push branches and the tag at the end, once approved."),
        ] = False,
        no_dependents: Annotated[
            bool, typer.Option("--no-dependents", help="Do not touch the projects depending on P.")
        ] = False,
        source: Annotated[
            str | None, typer.Option("--source", help="Branch to release from (default per model).")
        ] = None,
        target: Annotated[
            str | None, typer.Option("--target", help="Branch to merge into and tag.")
        ] = None,
        yes: Annotated[
            bool,
            typer.Option("--yes", "-y", help="Approve the release in advance (never the push)."),
        ] = False,
        detach: DetachOpt = False,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Coordinated release: tests, version bump, merge, tag, dependents' pins, tests, push."""
        from overlord.core.release import ReleaseOptions, plan_release

        config = load_config(config_path)
        options = ReleaseOptions(
            project=project,
            version=version,
            execute=execute,
            push=push,
            dependents=not no_dependents,
            source=source,
            target=target,
        )
        plan = plan_release(config, options)
        if not execute:
            from overlord import durations

            durations.expect(config, plan)
            show_plan(plan, json_out)
            raise typer.Exit(0)
        from overlord.cli.progress import execute_and_report

        raise typer.Exit(
            execute_and_report(config, plan, yes=yes, detach=detach, json_out=json_out)
        )


def show_plan(plan: object, json_out: bool) -> None:
    """The plan, its order and what each step will change; nothing runs."""
    from overlord.cli.render import expected_legend, plan_document, plan_header, steps_table
    from overlord.core.plan import DispatchPlan

    assert isinstance(plan, DispatchPlan)
    if json_out:
        print_json({**plan_document(plan), "dry_run": True})
        return
    say(plan_header(plan))
    console.print(steps_table(plan))
    say(expected_legend(plan))
    say("order: " + " -> ".join(plan.order()))
    say("what each step will change:")
    for step in plan.steps:
        after = f" (after {', '.join(step.depends_on)})" if step.depends_on else ""
        line = f"  {step.id} {step.kind.value} {step.project or ''}{after}: {step.description}"
        say(line)
    for note in plan.notes:
        say(f"  note: {note}")
    if any(s.kind.value == "push" for s in plan.steps):
        console.print("  the push runs only after every test passed and a person approved it")
    console.print("nothing changed; run it with --execute")
