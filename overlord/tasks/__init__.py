"""Celery app, task definitions and the plan → canvas compiler.

``celery -A overlord.tasks worker|beat|flower`` finds the app here; it is built on first
access so that importing ``overlord.tasks.compiler`` costs nothing.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from overlord.tasks.app import _from_env

        value = _from_env()
        globals()["app"] = globals()["celery"] = value
        return value
    raise AttributeError(name)
