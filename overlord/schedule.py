"""The ``schedule:`` section as Celery beat entries (pure: no broker, no I/O).

Each entry ``NAME: {cron: "M H DoM Mon DoW", task: "..."}`` becomes a beat entry that
sends ``overlord.scheduled`` with the entry's *name* as its only argument; the task
re-reads the text from the configuration, so nothing secret or mutable travels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from overlord import defaults
from overlord.core.config import Config
from overlord.core.terminal import one_line
from overlord.errors import ConfigError

if TYPE_CHECKING:
    from celery.schedules import crontab

#: The task every schedule entry sends.
TASK_NAME = "overlord.scheduled"
#: The order of the five cron fields, as ``crontab`` names them.
FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def _where(config: Config | None, name: str) -> str:
    source = config.source if config is not None else None
    return f"{source}: " if source else ""


def to_crontab(cron: str, *, name: str = "entry", config: Config | None = None) -> crontab:
    """``cron`` (5 fields) as a ``celery.schedules.crontab``; ``ConfigError`` when invalid."""
    from celery.schedules import ParseException, crontab

    parts = cron.split()
    key = f"schedule.{name}.cron"
    if len(parts) != len(FIELDS):
        raise ConfigError(
            f"{_where(config, name)}{key}: {cron!r} must have 5 fields "
            "(minute hour day-of-month month day-of-week)",
            "e.g. '0 2 * * *' for 02:00 every day",
        )
    try:
        schedule = crontab(**dict(zip(FIELDS, parts, strict=True)))
    except (ParseException, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(
            f"{_where(config, name)}{key}: {cron!r} is not a valid cron expression: {exc}",
            "fields are minute hour day-of-month month day-of-week, e.g. '30 1 * * 1-5'",
        ) from None
    return schedule


def validate(config: Config) -> None:
    """Check every entry of ``schedule:`` (cron syntax, non-empty task text)."""
    for name, entry in config.schedule.items():
        to_crontab(entry.cron, name=name, config=config)
        if not entry.task.strip():
            raise ConfigError(
                f"{_where(config, name)}schedule.{name}.task: the task text is empty",
                'write an instruction, e.g. "run tests across all projects"',
            )


def beat_schedule(config: Config) -> dict[str, dict[str, Any]]:
    """``app.conf.beat_schedule`` for ``config``: one entry per ``schedule:`` key."""
    validate(config)
    return {
        name: {
            "task": TASK_NAME,
            "schedule": to_crontab(entry.cron, name=name, config=config),
            "args": (name,),
            "options": {"queue": defaults.DIRECT_QUEUE, "shadow": f"scheduled {one_line(name)}"},
        }
        for name, entry in config.schedule.items()
    }
