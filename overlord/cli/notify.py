"""``overlord notify``: the configured webhooks, and ``--test`` to send each a sample."""

from __future__ import annotations

from typing import Annotated

import typer

from overlord.cli.common import ConfigOpt, JsonOpt, load_config, print_json, say


def register(app: typer.Typer) -> None:
    @app.command("notify")
    def notify_command(
        test: Annotated[
            bool, typer.Option("--test", help="POST a sample notification to every webhook.")
        ] = False,
        json_out: JsonOpt = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Show the webhooks of `notify:` (URLs masked); --test sends each a sample."""
        from overlord import notify
        from overlord.errors import ConfigError

        config = load_config(config_path)
        hooks = [(notify.label(i, h), h) for i, h in enumerate(config.notify, 1)]
        if not hooks:
            raise ConfigError(
                f"{config.source}: notify: no webhooks configured",
                "add e.g. `notify: [{url_env: OVERLORD_SLACK_WEBHOOK, format: slack}]`",
            )
        if not test:
            if json_out:
                print_json(
                    {"webhooks": [{"webhook": name, "events": h.events} for name, h in hooks]}
                )
                return
            for name, hook in hooks:
                say(f"{name}: {', '.join(hook.events)}")
            return
        from overlord import webhooks

        results = webhooks.send_test(config)
        if json_out:
            print_json(
                {
                    "results": [
                        {"webhook": r.label, "delivered": r.ok, "detail": r.detail} for r in results
                    ]
                }
            )
        else:
            for result in results:
                say(result.line())
        raise typer.Exit(0 if all(r.ok for r in results) else 1)
