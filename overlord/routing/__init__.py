"""Model routing (SPEC §4.5): which tier a task needs, which endpoint gets it, endpoint
health, and the global per-endpoint concurrency limit.

``tiers`` and ``endpoints`` are pure: planning routes by a ``Known`` it is handed.
``health`` does HTTP (requests); ``check`` gathers what is known at the edges;
``semaphore`` talks to Redis through a client it is given. Nothing here imports Celery.
"""

from __future__ import annotations

from overlord.routing.endpoints import Choice, Known, choose, model_size, route
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
    "Known",
    "TaskType",
    "choose",
    "fallbacks",
    "model_size",
    "prefers_large",
    "route",
    "tier_for",
]
