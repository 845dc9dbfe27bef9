"""`overlord demo [DIR]`: a small demo workspace (a library, its dependents, remotes) and config."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import JsonOpt

DEFAULT_DIR = "./overlord-demo"


def next_commands(config: str) -> list[str]:
    """Commands to try first against the demo configuration at ``config``."""
    import shlex

    opt = f"--config {shlex.quote(config)}"
    return [
        f"overlord {opt} status",
        f"overlord {opt} graph",
        f'overlord {opt} dispatch "run tests across all projects"',
        f'overlord {opt} dispatch "clean stale branches in core"',
        f"overlord {opt} release core 0.2.0",
    ]


def demo(
    directory: Annotated[
        str, typer.Argument(metavar="DIR", help="Where to create the demo workspace.")
    ] = DEFAULT_DIR,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild a demo workspace that already exists.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Create a demo workspace (core library, api and web apps, a tool; bare remotes) and config."""
    import shlex
    from pathlib import Path

    from overlord import demo as demo_mod
    from overlord.cli.common import console, print_json

    ws = demo_mod.create(Path(directory), force=force)
    config = str(ws.config_path)
    commands = next_commands(config)
    if json_out:
        print_json(
            {
                "root": str(ws.root),
                "config": config,
                "repos": {name: str(path) for name, path in ws.repos.items()},
                "remotes": {name: str(path) for name, path in ws.remotes.items()},
                "depends_on": ws.expected_depends_on,
                "test_command": ws.test_command,
                "next": commands,
            }
        )
        return

    def out(text: str = "") -> None:
        console.print(text, markup=False, soft_wrap=True)  # commands stay copy-pasteable

    out(f"Created a demo workspace in {ws.root}:")
    for name, path in ws.repos.items():
        needs = ", ".join(ws.expected_depends_on[name]) or "-"
        rel = path.relative_to(ws.root)
        out(f"  {name:<6} {str(rel):<12} depends on: {needs}")
    out("Each repo's origin is a bare repository in remotes/ (pushes stay on this machine).")
    out(f"Configuration: {config}")
    out()
    out("Try next:")
    for command in commands:
        out(f"  {command}")
    out()
    out(f"Or set it once for this shell: export OVERLORD_CONFIG={shlex.quote(config)}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
