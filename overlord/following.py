"""Following a plan: read it until it settles (a terminal state, or waiting for a person),
showing progress and running a periodic check meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable

from overlord import defaults
from overlord.core.config import Config
from overlord.core.plan import DispatchPlan
from overlord.wiring import plan_store

Follow = Callable[[DispatchPlan], None]


def wait(
    config: Config,
    plan_id: str,
    *,
    follow: Follow | None = None,
    timeout: float | None = None,
    tick: Callable[[], list[str]] | None = None,
    poll: float = defaults.FOLLOW_STATE_POLL,
) -> DispatchPlan:
    """Read the plan until it settles (a terminal state, or waiting for a person).

    Between two reads of its state it sleeps until a transition made in this process
    (an in-process worker's), or ``poll`` seconds for other processes' changes.
    ``tick`` runs every ``defaults.FOLLOW_TICK`` seconds meanwhile; the lines it returns are passed to
    ``follow.notice`` when the follower has one (the CLI prints them)."""
    assert config.state_url
    store = plan_store(config)
    plan_id = store.resolve_id(plan_id)
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = 0.0
    ticked = time.monotonic()
    while True:
        if tick is not None and time.monotonic() - ticked >= defaults.FOLLOW_TICK:
            ticked = time.monotonic()
            _tick(tick, getattr(follow, "notice", None))
        # read before the state: a transition after this reading ends the wait below at once
        seen = store.transitions()
        # the plan's state is one cheap read; the whole plan is loaded for ``follow`` at
        # most every defaults.FOLLOW_POLL seconds (and once at the end)
        state = store.state(plan_id)
        settled = state.terminal or state.waiting
        late = deadline is not None and time.monotonic() > deadline
        if follow and (settled or late or time.monotonic() - shown >= defaults.FOLLOW_POLL):
            follow(store.load(plan_id))
            shown = time.monotonic()
        if settled or late:
            return store.load(plan_id)
        now = time.monotonic()
        nap = poll
        if follow:
            nap = min(nap, shown + defaults.FOLLOW_POLL - now)
        if tick is not None:
            nap = min(nap, ticked + defaults.FOLLOW_TICK - now)
        if deadline is not None:
            nap = min(nap, deadline - now)
        store.wait_for_transition(max(nap, 0.0), after=seen)


def _tick(tick: Callable[[], list[str]], notice: Callable[[str], None] | None) -> None:
    try:
        lines = tick()
    except Exception:  # a broker hiccup: the next tick tries again
        return
    for line in lines:
        if notice is not None:
            notice(line)
