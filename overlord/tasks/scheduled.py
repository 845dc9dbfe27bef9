"""Scheduled runs (Celery beat): placeholder, filled in by the operations work."""

from __future__ import annotations

from celery import Celery


def register(app: Celery) -> None:
    """Register the scheduled-run task and the beat schedule on ``app``."""
