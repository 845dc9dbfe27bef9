"""`overlord autonomy`: show and change autonomy levels and pre-approved action kinds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from overlord.cli.common import ConfigOpt, JsonOpt, console, load_config, print_json

if TYPE_CHECKING:
    from overlord.core.config import Config


def _state(config: Config) -> dict[str, Any]:
    from overlord.core.approval import AutonomyPolicy

    policy = AutonomyPolicy(config)
    return {
        "config": str(config.source) if config.source else None,
        "global": policy.global_level.value,
        "projects": [
            {
                "name": name,
                "level": policy.level_for(name).value,
                "override": name in config.autonomy.overrides,
                "pre_approved": [k.value for k in policy.pre_approved(name)],
            }
            for name in config.projects
        ],
    }


def _approved(config: Config) -> dict[str, Any]:
    return {
        "config": str(config.source) if config.source else None,
        "pre_approved": {
            name: [k.value for k in kinds]
            for name, kinds in config.autonomy.pre_approved.items()
            if kinds
        },
    }


def _show(state: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"autonomy — global level: {state['global']}", title_justify="left")
    table.add_column("project")
    table.add_column("level")
    table.add_column("from")
    table.add_column("pre-approved")
    for row in state["projects"]:
        table.add_row(
            row["name"],
            row["level"],
            "override" if row["override"] else "global",
            ", ".join(row["pre_approved"]) or "-",
        )
    console.print(table)


def _show_approved(document: dict[str, Any]) -> None:
    approved = document["pre_approved"]
    if not approved:
        console.print("no action kinds are pre-approved")
        return
    for name, kinds in approved.items():
        console.print(f"{name}: {', '.join(kinds)}")


def autonomy(
    global_level: Annotated[
        str | None,
        typer.Option("--global", metavar="LEVEL", help="Set the global level."),
    ] = None,
    project: Annotated[
        tuple[str, str] | None,
        typer.Option("--project", metavar="P LEVEL", help="Set project P's level."),
    ] = None,
    approve: Annotated[
        tuple[str, str] | None,
        typer.Option("--approve", metavar="P ACTION", help="Pre-approve ACTION for P."),
    ] = None,
    revoke: Annotated[
        tuple[str, str] | None,
        typer.Option("--revoke", metavar="P ACTION", help="Withdraw a pre-approval."),
    ] = None,
    list_approved: Annotated[
        bool, typer.Option("--list-approved", help="List the pre-approved action kinds.")
    ] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show and change autonomy: cautious | proactive | scheduled, and pre-approvals."""
    from overlord.config_edit import ConfigDocument, parse_level
    from overlord.core.approval import parse_kind
    from overlord.core.registry import Registry

    cfg = load_config(config)
    registry = Registry(cfg)

    # Validate every input before anything is written.
    new_global = parse_level(global_level) if global_level is not None else None
    new_project = (
        (registry.resolve(project[0]), parse_level(project[1])) if project is not None else None
    )
    to_approve = (registry.resolve(approve[0]), parse_kind(approve[1])) if approve else None
    to_revoke = (registry.resolve(revoke[0]), revoke[1]) if revoke else None

    changes: list[str] = []
    if new_global or new_project or to_approve or to_revoke:
        assert cfg.source is not None
        doc = ConfigDocument.load(cfg.source)
        if new_global is not None:
            doc.set_global_level(new_global)
        if new_project is not None:
            doc.set_project_level(*new_project)
        if to_approve is not None:
            doc.approve(*to_approve)
        if to_revoke is not None:
            doc.revoke(*to_revoke)
        cfg = doc.save()
        changes = doc.changes

    document = _approved(cfg) if list_approved else _state(cfg)
    if json_out:
        if changes:
            document["changes"] = changes
        print_json(document)
        return
    for change in changes:
        console.print(f"[green]✓[/] {change}")
    if to_approve is not None:
        from overlord.core.approval import AutonomyPolicy
        from overlord.core.config import Level

        level = AutonomyPolicy(cfg).level_for(to_approve[0])
        if level is not Level.SCHEDULED:
            console.print(
                f"[dim]note: {to_approve[0]} is {level.value}; "
                "pre-approvals apply at the scheduled level[/]"
            )
    if changes:
        console.print(f"[dim]saved {cfg.source}[/]")
        return
    if list_approved:
        _show_approved(document)
    else:
        _show(document)


def register(app: typer.Typer) -> None:
    app.command("autonomy")(autonomy)
