"""``overlord worker``, ``overlord beat``, ``overlord flower``: the long-running services.

Each builds the Celery app with ``overlord.tasks.app.make_app`` on the configured broker
(``$OVERLORD_BROKER_URL`` overrides ``broker_url``, e.g. ``redis://redis:6379/0`` inside
Compose), prints one startup line, and hands over to Celery. A worker on a model queue
takes a global slot of its endpoint (``overlord.routing.limit``, token
``PLAN:STEP``) around every step of that queue, so scaling workers never exceeds
``concurrent``. Minion steps are left out: ``overlord.minion_step`` takes the slot itself,
of the endpoint it actually calls (which may be a fallback), and holding a second slot
here would starve it.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from overlord.cli.common import ConfigOpt, load_config
from overlord.core.terminal import clean
from overlord.errors import ConfigError

if TYPE_CHECKING:
    from celery import Celery

    from overlord.core.config import Config
#: Environment variable that overrides ``broker_url`` for services (containers).
BROKER_ENV = "OVERLORD_BROKER_URL"
POOLS = ("threads", "prefork", "solo")
#: The task that holds its endpoint's slot itself (see ``overlord.minion_step``).
SELF_SLOTTED = "overlord.minion"


def broker_for(config: Config) -> str:
    """The broker a service connects to; a one-line error when there is none."""
    url = os.environ.get(BROKER_ENV) or config.broker_url
    if not url:
        where = f"{config.source}: " if config.source else ""
        raise ConfigError(
            f"{where}workers need broker_url (a Redis URL); without it dispatch runs embedded "
            "with its own worker",
            f"set broker_url: redis://127.0.0.1:6379/0 in the config or ${BROKER_ENV}",
        )
    config.broker_url = url
    return url


def resolve_queues(config: Config, wanted: list[str] | None) -> list[str]:
    """The queues to consume (default: all of them); unknown names are refused."""
    from overlord.tasks.app import queues

    valid = queues(config)
    if not wanted:
        return valid
    chosen: list[str] = []
    for item in wanted:
        for name in (n.strip() for n in item.split(",")):
            if name and name not in chosen:
                chosen.append(name)
    unknown = [q for q in chosen if q not in valid]
    if unknown or not chosen:
        raise ConfigError(
            f"unknown queue {', '.join(repr(q) for q in unknown) or '(none)'}; "
            f"valid queues: {', '.join(valid)}",
            "model queues are named after the endpoints in models:",
        )
    return chosen


def concurrency_for(config: Config, chosen: list[str]) -> int:
    """A model queue runs ``concurrent`` steps; ``direct`` runs ``max_concurrent_steps``."""
    from overlord import defaults

    by_queue = {e.queue_name: e.concurrent for e in config.models.values()}
    by_queue[defaults.DIRECT_QUEUE] = config.dispatch.max_concurrent_steps
    return max(1, sum(by_queue[q] for q in chosen))


def masked(url: str) -> str:
    from overlord.core.secrets import mask_url

    return mask_url(url)


class SlotGuard:
    """Holds a global slot of a model queue's endpoint while a step of that queue runs."""

    def __init__(self, app: Celery, config: Config, broker: str) -> None:
        self.app = app
        self.config = config
        self.broker = broker
        self.endpoints = {e.queue_name: e for e in config.models.values()}
        self.held: dict[str, ExitStack] = {}

    def connect(self) -> SlotGuard:
        from celery import signals

        signals.task_prerun.connect(self.prerun, weak=False)
        signals.task_postrun.connect(self.postrun, weak=False)
        return self

    def disconnect(self) -> None:
        from celery import signals

        signals.task_prerun.disconnect(self.prerun)
        signals.task_postrun.disconnect(self.postrun)

    def prerun(
        self, task_id: str | None = None, task: Any = None, args: Any = None, **_: Any
    ) -> None:
        from overlord.routing.limit import endpoint_slots

        if task is None or task_id is None or task.app is not self.app:
            return
        if task.name == SELF_SLOTTED:
            return
        queue = (task.request.delivery_info or {}).get("routing_key")
        endpoint = self.endpoints.get(queue or "")
        if endpoint is None or not args or len(args) < 2:
            return
        stack = ExitStack()
        token = f"{args[0]}:{args[1]}"
        stack.enter_context(endpoint_slots(self.config, endpoint, self.broker).hold(token=token))
        self.held[task_id] = stack

    def postrun(self, task_id: str | None = None, **_: Any) -> None:
        stack = self.held.pop(task_id or "", None)
        if stack is not None:
            stack.close()


def worker_argv(
    chosen: list[str], concurrency: int, pool: str, loglevel: str, hostname: str | None
) -> list[str]:
    name = hostname or (f"{chosen[0]}@%h" if len(chosen) == 1 else "overlord@%h")
    return [
        "worker",
        "--queues",
        ",".join(chosen),
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        loglevel,
        "--hostname",
        name,
        "--without-mingle",
    ]


#: Flower's basic-auth setting: ``user:password`` (several separated by commas).
FLOWER_AUTH_ENV = "FLOWER_BASIC_AUTH"


def _loopback(address: str) -> bool:
    return address in ("localhost", "::1") or address.startswith("127.")


def check_flower_access(address: str, auth: str | None, unauthenticated_api: bool) -> None:
    """Refuse to expose Flower (its API can enqueue any task) without a credential."""
    if auth is not None:
        pairs = [p.partition(":") for p in auth.split(",")]
        if not all(user and sep and password for user, sep, password in pairs):
            raise ConfigError(
                f"${FLOWER_AUTH_ENV} must be user:password with both parts non-empty "
                "(several separated by commas)",
                f"e.g. export {FLOWER_AUTH_ENV}=admin:$(openssl rand -hex 16)",
            )
    elif not _loopback(address):
        raise ConfigError(
            f"Flower on {address} needs ${FLOWER_AUTH_ENV}: its API can enqueue any task",
            f"set {FLOWER_AUTH_ENV}=user:password, or bind 127.0.0.1 (the default)",
        )
    if unauthenticated_api and not _loopback(address):
        raise ConfigError(
            f"--unauthenticated-api on {address} would open Flower's API to the network",
            "drop --unauthenticated-api, or bind 127.0.0.1",
        )


def _say(line: str) -> None:
    sys.stderr.write(clean(line) + "\n")
    sys.stderr.flush()


def health_at_start(config: Config) -> None:
    """SPEC §4.5: endpoints are checked at start (all at once) when the cache holds no
    fresh record; planning only ever reads the cache."""
    if config.models:
        from overlord.routing.check import at_startup

        at_startup(config)


def register(app: typer.Typer) -> None:
    @app.command()
    def worker(
        queue: Annotated[
            list[str] | None,
            typer.Option("--queue", "-Q", help="Queue to consume (repeat; default: all)."),
        ] = None,
        concurrency: Annotated[
            int | None,
            typer.Option("--concurrency", "-c", min=1, help="Default: from the endpoint."),
        ] = None,
        loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
        pool: Annotated[str, typer.Option("--pool", "-P", help="threads | prefork | solo")] = (
            "threads"
        ),
        hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
        config_path: ConfigOpt = None,
    ) -> None:
        """Start a Celery worker; a model queue's concurrency is its endpoint's `concurrent`."""
        from overlord.tasks.app import make_app
        from overlord.tasks.runtime import check_broker

        if pool not in POOLS:
            raise ConfigError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
        config = load_config(config_path)
        broker = config.broker_url = broker_for(config)
        chosen = resolve_queues(config, queue)
        slots = concurrency or concurrency_for(config, chosen)
        check_broker(broker)
        health_at_start(config)
        celery_app = make_app(config, broker)
        guard = SlotGuard(celery_app, config, broker).connect()
        from overlord.tasks.liveness import Watchdog

        Watchdog(celery_app, config).start()  # re-sends the steps of lost workers
        _say(
            f"overlord worker: queues {','.join(chosen)} · concurrency {slots} · pool {pool} "
            f"· broker {masked(broker)}"
        )
        try:
            code = celery_app.worker_main(worker_argv(chosen, slots, pool, loglevel, hostname))
        finally:
            guard.disconnect()
        raise typer.Exit(int(code or 0))

    @app.command()
    def beat(
        loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
        schedule_file: Annotated[
            Path | None,
            typer.Option("--schedule-file", "-s", help="Default: beside the config."),
        ] = None,
        config_path: ConfigOpt = None,
    ) -> None:
        """Start the Celery beat scheduler for `schedule:` (cron entries)."""
        from overlord import schedule
        from overlord.tasks.app import make_app
        from overlord.tasks.runtime import check_broker

        config = load_config(config_path)
        broker = broker_for(config)
        if not config.schedule:
            raise ConfigError(
                f"{config.source}: schedule: has no entries, so beat has nothing to do",
                'add e.g. nightly-tests: {cron: "0 2 * * *", task: "run tests across all projects"}',
            )
        schedule.validate(config)
        check_broker(broker)
        health_at_start(config)  # the scheduled runs plan from it
        celery_app = make_app(config, broker)
        from overlord.tasks.liveness import Watchdog

        Watchdog(celery_app, config).start()  # beat, too, re-sends the steps of lost workers
        path = schedule_file or config.state_dir / "celerybeat-schedule"
        entries = ", ".join(f"{n} ({e.cron})" for n, e in config.schedule.items())
        _say(f"overlord beat: {entries} · broker {masked(broker)} · state {path}")
        code = celery_app.start(["beat", "--loglevel", loglevel, "--schedule", str(path)])
        raise typer.Exit(int(code or 0))

    @app.command()
    def flower(
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 5555,
        address: Annotated[str, typer.Option("--address")] = "127.0.0.1",
        unauthenticated_api: Annotated[
            bool,
            typer.Option(
                "--unauthenticated-api",
                help="Serve /api/* without auth (FLOWER_UNAUTHENTICATED_API=true).",
            ),
        ] = False,
        config_path: ConfigOpt = None,
    ) -> None:
        """Start Flower (monitoring UI and HTTP API) on the configured broker.

        Binds 127.0.0.1 unless --address says otherwise; $FLOWER_BASIC_AUTH
        (user:password) is required off the loopback, and refused when empty or malformed.
        """
        from overlord.tasks.app import make_app
        from overlord.tasks.runtime import check_broker

        config = load_config(config_path)
        broker = broker_for(config)
        check_flower_access(address, os.environ.get(FLOWER_AUTH_ENV), unauthenticated_api)
        check_broker(broker)
        if unauthenticated_api:
            os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"
        celery_app = make_app(config, broker)
        _say(f"overlord flower: http://{address}:{port} · broker {masked(broker)}")
        code = celery_app.start(["flower", f"--port={port}", f"--address={address}"])
        raise typer.Exit(int(code or 0))
