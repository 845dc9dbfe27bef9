"""Routing's single limit gate (SPEC §4.5): at most an endpoint's ``concurrent`` calls
at once, across every worker and machine together.

Every model call passes here: a minion step holds a ``slot`` of the endpoint it actually
calls (which may be a fallback), a translation holds one for its request, and a worker
holds one (through ``cli.services.SlotGuard``) around any other task of a model queue.
The slots come from ``wiring.slots``: with a broker, a Redis semaphore with leases (a
killed worker's slot comes back); without one, counted among this process's threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from overlord import defaults, wiring
from overlord.core.config import Config, ModelEndpoint
from overlord.ports import Slots


def endpoint_slots(config: Config, endpoint: ModelEndpoint, broker: str | None) -> Slots:
    """The endpoint's ``concurrent`` slots: global on ``broker``, else in this process."""
    from overlord.routing.broker import lease_seconds

    return wiring.slots(
        endpoint.name,
        endpoint.concurrent,
        broker=broker,
        lease_seconds=lease_seconds(config),
        poll=defaults.SLOT_POLL,
    )


@contextlib.contextmanager
def slot(
    config: Config, endpoint: ModelEndpoint, url: str | None, timeout: float
) -> Iterator[None]:
    """Hold one of the endpoint's slots: global on the broker ``url``, else for this
    process; ``errors.SlotTimeout`` when none is free within ``timeout`` seconds."""
    with endpoint_slots(config, endpoint, url).hold(timeout=max(0.0, timeout)):
        yield
