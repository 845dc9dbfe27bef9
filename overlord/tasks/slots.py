"""A plan's ``max_concurrent_steps`` (SPEC §3), held by slots rather than by the canvas.

The compiler sends every independent line of a plan at once; how many of its steps run
at the same time is decided here, when a step starts:

- embedded mode: the in-process worker's concurrency is ``max_concurrent_steps`` (one
  plan per runtime), so a worker thread is the slot; the step holds one of the plan's
  in-process slots (``local_slots``), which it always finds free;
- distributed mode: any number of workers may take the plan's steps, so each step holds
  one of the plan's slots in a Redis lease semaphore (``overlord:slots:plan:<id>``, the
  same semaphore that holds an endpoint's ``concurrent``) while it runs. A waiting step
  is woken the moment a slot is released.

Both are ``ports.Slots``, from ``wiring.slots``.

The slot is taken before the repository lock, so a step waiting for a slot never holds a
repository another step of the plan needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from overlord.core.config import Config

#: Name prefix of a plan's semaphore (under ``overlord:slots:``).
PLAN_PREFIX = "plan:"


def embedded(app: Any) -> bool:
    """Whether ``app`` belongs to an embedded runtime (its worker's threads are the slots)."""
    return bool(getattr(app, "overlord_embedded", False))


@contextmanager
def plan_slot(app: Any, config: Config, plan_id: str, step_id: str) -> Iterator[None]:
    """Hold one of the plan's ``max_concurrent_steps`` slots while the step runs."""
    from overlord import wiring
    from overlord.routing.broker import lease_seconds

    slots = wiring.slots(
        PLAN_PREFIX + plan_id,
        config.dispatch.max_concurrent_steps,
        broker=None if embedded(app) else str(app.conf.broker_url),
        lease_seconds=lease_seconds(config),
    )
    # the token is the step: a redelivered step takes its own slot back, not a second one
    with slots.hold(token=f"{plan_id}:{step_id}"):
        yield
