"""``overlord graph``: the dependency graph, and what a change to one project affects."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import ConfigOpt, JsonOpt, console, load_config, print_json


def register(app: typer.Typer) -> None:
    graph_app = typer.Typer(
        help="The dependency graph of projects.", invoke_without_command=True, rich_markup_mode=None
    )

    @graph_app.callback()
    def graph(ctx: typer.Context, json_out: JsonOpt = False, config_path: ConfigOpt = None) -> None:
        """Show every project with what it depends on and what depends on it."""
        if ctx.invoked_subcommand is not None:
            return
        from rich.tree import Tree

        from overlord.core.graph import DependencyGraph

        config = load_config(config_path)
        dag = DependencyGraph(config)
        if json_out:
            print_json({**dag.as_dict(), "edges": [list(e) for e in dag.edges()]})
            return
        tree = Tree("[bold]projects[/] (dependencies first)")
        for name in dag.order():
            role = config.projects[name].role
            node = tree.add(f"[bold]{name}[/] [dim]{role}[/]")
            if dag.upstream(name):
                node.add(f"depends on: {', '.join(sorted(dag.upstream(name)))}")
            if dag.downstream(name):
                node.add(f"used by: {', '.join(dag.downstream(name))}")
        console.print(tree)

    @graph_app.command("affected")
    def affected(
        project: Annotated[str, typer.Argument(help="The project that changes.")],
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Everything downstream of PROJECT, in a valid order."""
        from overlord.core.graph import DependencyGraph
        from overlord.core.registry import Registry

        config = load_config(config_path)
        name = Registry(config).resolve(project)
        order = DependencyGraph(config).affected_by(name)
        if json_out:
            print_json({"project": name, "affected": order})
            return
        console.print(f"{name} affects: {' -> '.join(order) if order else 'nothing downstream'}")

    app.add_typer(graph_app, name="graph")
