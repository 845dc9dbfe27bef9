"""``overlord plans`` and the commands that act on a persisted plan from any shell."""

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

IdArg = Annotated[str, typer.Argument(help="Plan id (a unique prefix works).")]


def register(app: typer.Typer) -> None:
    plans_app = typer.Typer(
        rich_markup_mode=None,
        help="Persisted plans: list them, show one.",
        invoke_without_command=True,
    )

    @plans_app.callback()
    def plans(
        ctx: typer.Context,
        status: Annotated[
            str | None, typer.Option("--status", help="Only plans in this state.")
        ] = None,
        limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """List plans, newest first."""
        if ctx.invoked_subcommand is not None:
            return
        from rich.table import Table
        from rich.text import Text

        from overlord.core.plan import PlanState
        from overlord.errors import OverlordError
        from overlord.runner import store_for

        if status is not None and status not in {s.value for s in PlanState}:
            raise OverlordError(
                f"unknown plan state {status!r}",
                f"use one of {', '.join(s.value for s in PlanState)}",
            )
        rows = store_for(load_config(config_path)).list_plans(status, limit)
        if json_out:
            print_json({"plans": rows})
            return
        table = Table("id", "state", "kind", "created", "task", header_style="bold")
        for row in rows:
            table.add_row(
                row["id"], row["state"], row["kind"], row["created_at"][:19], Text(row["task"])
            )
        console.print(table)

    @plans_app.command("show")
    def show(plan_id: IdArg, json_out: JsonOpt = False, config_path: ConfigOpt = None) -> None:
        """A plan with each step's state, timings, output tail and tier/endpoint."""
        from overlord.cli.render import (
            expected_legend,
            outcome_line,
            plan_document,
            plan_header,
            steps_table,
        )
        from overlord.runner import store_for

        store = store_for(load_config(config_path))
        plan = store.load(plan_id)
        events = store.events(plan.id)
        deliveries = [
            {"at": e["at"], "delivery": e["message"]} for e in events if e["kind"] == "notify"
        ]
        if json_out:
            print_json({**plan_document(plan), "events": events, "deliveries": deliveries})
            return
        say(plan_header(plan))
        console.print(steps_table(plan, outputs=True))
        say(expected_legend(plan))
        for step in plan.steps:
            if step.route_reason:
                say(f"  {step.id}: {step.endpoint} — {step.route_reason}")
        say(outcome_line(plan))
        for note in plan.notes:
            say(f"  {note}")
        if deliveries:
            say("notifications:")
            for d in deliveries:
                say(f"  {d['at'][:19]} {d['delivery']}")

    app.add_typer(plans_app, name="plans")

    def _act(
        action: str, plan_id: str, json_out: bool, config_path: str | None, detach: bool = False
    ) -> int:
        from overlord import dispatching, recovery
        from overlord.cli.progress import Progress, report, settle_push

        config = load_config(config_path)
        if action == "reject":
            return report(dispatching.reject(config, plan_id), json_out)
        with Progress(quiet=json_out) as progress:
            if action == "approve":
                plan = dispatching.approve(config, plan_id, follow=progress, detach=detach)
            elif action == "resume":
                plan = recovery.resume(config, plan_id, follow=progress, detach=detach)
            else:
                plan = recovery.cancel(config, plan_id, follow=progress)
        plan = settle_push(config, plan, detach=detach, json_out=json_out)
        return report(plan, json_out)

    @app.command()
    def approve(
        plan_id: IdArg,
        detach: DetachOpt = False,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Approve a pending plan (or its waiting push) and run it."""
        raise typer.Exit(_act("approve", plan_id, json_out, config_path, detach))

    @app.command()
    def reject(plan_id: IdArg, json_out: JsonOpt = False, config_path: ConfigOpt = None) -> None:
        """Reject a pending plan or its waiting push (local changes are kept)."""
        raise typer.Exit(_act("reject", plan_id, json_out, config_path))

    @app.command()
    def resume(
        plan_id: IdArg,
        detach: DetachOpt = False,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Finish a plan whose run stopped (crash, killed worker, failed push)."""
        raise typer.Exit(_act("resume", plan_id, json_out, config_path, detach))

    @app.command()
    def cancel(plan_id: IdArg, json_out: JsonOpt = False, config_path: ConfigOpt = None) -> None:
        """Stop a plan and roll back every step it completed."""
        raise typer.Exit(_act("cancel", plan_id, json_out, config_path))
