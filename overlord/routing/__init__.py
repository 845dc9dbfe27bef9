"""Model routing (SPEC §4.5): which tier a task needs, which endpoint gets it, endpoint
health, and the global per-endpoint concurrency limit.

``tiers`` and ``endpoints`` are pure. ``health`` does HTTP (requests); ``semaphore``
talks to Redis through a client it is given. Nothing here imports Celery.
"""

from __future__ import annotations

from overlord.routing.endpoints import Choice, choose, model_size, route
from overlord.routing.tiers import (
    FALLBACK_ORDER,
    Complexity,
    TaskType,
    fallbacks,
    prefers_large,
    tier_for,
)

__all__ = [
    "FALLBACK_ORDER",
    "Choice",
    "Complexity",
    "TaskType",
    "choose",
    "fallbacks",
    "model_size",
    "prefers_large",
    "route",
    "tier_for",
]
