"""``overlord report [--since 7d] [--json] [--prometheus]``: outcomes of finished steps."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from overlord.cli.common import ConfigOpt, JsonOpt, console, load_config, print_json


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _sec(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}s"


def _table(title: str, key: str, rows: list[dict[str, Any]], extra: str | None = None) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in (key, *([extra] if extra else []), "runs", "ok", "failed", "rate", "median"):
        table.add_column(name, justify="left" if name in (key, extra) else "right")
    table.add_column("p95", justify="right")
    for row in rows:
        table.add_row(
            str(row[key]),
            *([str(row.get(extra) or "—")] if extra else []),
            str(row["runs"]),
            str(row["succeeded"]),
            str(row["failed"]),
            _pct(row["success_rate"]),
            _sec(row["median_s"]),
            _sec(row["p95_s"]),
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        since: Annotated[
            str, typer.Option("--since", help="How far back: 30m, 24h, 7d, 2w.")
        ] = "7d",
        json_out: JsonOpt = False,
        prometheus: Annotated[
            bool, typer.Option("--prometheus", help="Prometheus text format instead.")
        ] = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Success rates and durations per action kind and per endpoint; failures by reason."""
        from overlord import report as telemetry

        config = load_config(config_path)
        doc = telemetry.summary(config, telemetry.parse_since(since))
        if json_out:
            print_json(doc)
            return
        if prometheus:
            typer.echo(telemetry.prometheus(doc), nl=False)
            return
        plans = ", ".join(f"{n} {s}" for s, n in doc["plans"].items()) or "none"
        console.print(f"since {doc['since']}: plans {plans}")
        if not doc["by_kind"]:
            console.print("no finished steps in this period")
            return
        console.print(_table("per action kind", "kind", doc["by_kind"]))
        console.print(_table("per endpoint", "endpoint", doc["by_endpoint"], extra="model"))
        if doc["failures"]:
            from rich.table import Table

            table = Table(title="failures by reason", title_justify="left")
            for name in ("count", "kind", "reason", "projects", "last plan"):
                table.add_column(name)
            for row in doc["failures"]:
                table.add_row(
                    str(row["count"]),
                    row["kind"],
                    row["reason"],
                    ", ".join(row["projects"]),
                    row["last_plan"],
                )
            console.print(table)
