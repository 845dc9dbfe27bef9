"""``overlord models``: every model endpoint with its tier, queue, health and load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from overlord.cli.common import ConfigOpt, JsonOpt, console, load_config, print_json

if TYPE_CHECKING:
    from overlord.core.config import Config


def rows(config: Config, *, check_now: bool = False) -> list[dict[str, Any]]:
    """One row per endpoint: tier, queue, health, last check, in-flight / concurrent.

    Health is checked now (all endpoints at once, short timeouts) when ``check_now`` or
    when no record is cached or it is older than ``health_interval``."""
    from overlord import defaults
    from overlord.routing.check import (
        cached,
        for_display,
        health_cache,
        in_flight_now,
        refresh,
    )
    from overlord.routing.health import utcnow

    cache = health_cache(config)
    if check_now:
        records = {
            **cached(config, cache),
            **refresh(config, cache, timeout=defaults.HEALTH_SHOW_TIMEOUT),
        }
    else:
        records = for_display(config, cache)
    load = in_flight_now(config)
    now = utcnow()
    out = []
    from overlord.core.secrets import mask_url

    for name, endpoint in config.models.items():
        record = records.get(name)
        out.append(
            {
                "name": name,
                "tier": endpoint.tier.value,
                "queue": endpoint.queue_name,
                "model": endpoint.model,
                "endpoint": mask_url(endpoint.endpoint),
                "health": "unknown" if record is None else ("up" if record.healthy else "down"),
                "status": None if record is None else record.status,
                "last_check": None if record is None else record.checked_at.isoformat(),
                "age_seconds": None if record is None else round(record.age(now), 1),
                "latency": None if record is None else record.latency,
                "in_flight": load.get(name, 0),
                "concurrent": endpoint.concurrent,
            }
        )
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def register(app: typer.Typer) -> None:
    @app.command()
    def models(
        json_out: JsonOpt = False,
        check: Annotated[
            bool,
            typer.Option(
                "--check",
                help="Check every endpoint now (all at once); without it, only those with "
                "no cached check or one older than health_interval.",
            ),
        ] = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Model endpoints: tier, queue, health, last check, in-flight / concurrent."""
        config = load_config(config_path)
        table_rows = rows(config, check_now=check)
        if json_out:
            print_json({"endpoints": table_rows})
            return
        if not table_rows:
            console.print("no model endpoints configured (add them under `models:`)")
            return
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False)
        for column in ("endpoint", "tier", "queue", "model", "health", "last check", "in-flight"):
            table.add_column(column)
        colour = {"up": "green", "down": "red", "unknown": "yellow"}
        for row in table_rows:
            health = f"[{colour[row['health']]}]{row['health']}[/]"
            if row["health"] == "down" and row["status"]:
                health += f" ({row['status']})"
            table.add_row(
                row["name"],
                row["tier"],
                row["queue"],
                row["model"],
                health,
                _age(row["age_seconds"]),
                f"{row['in_flight']}/{row['concurrent']}",
            )
        console.print(table)
