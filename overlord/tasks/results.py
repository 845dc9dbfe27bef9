"""The result backend: Celery's Redis backend, without the subscriptions sending a chord made.

Sending a chord, Celery's Redis backend builds a ``GroupResult`` of the header's results
only to see whether one of them is a group (whose structure it then saves for the body);
building it subscribes this process to the result channel of every header task, one
round trip each, on the critical path of every plan's start, for results nobody waits
for (the state database is the truth, SPEC §4.3). A header of plain results (every
canvas ``tasks.compiler`` builds: chains and single steps) skips that; any other header
goes through Celery's own code.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend
from celery.result import GroupResult


class Results(RedisBackend):  # type: ignore[misc]
    """``RedisBackend`` whose ``apply_chord`` subscribes to nothing for a flat header."""

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> Any:
        results = header_result_args[1]
        if isinstance(results, list) and not any(isinstance(r, GroupResult) for r in results):
            return None  # what Celery does for such a header, less the subscriptions
        return super().apply_chord(header_result_args, body, **kwargs)


def backend_url(broker: str) -> str:
    """The ``result_backend`` setting for ``broker``: on Redis this class, named as Celery
    reads ``CLASS+URL`` (``redis+socket://`` is Celery's ``socket://``); else ``broker``."""
    scheme = broker.partition("://")[0]
    if scheme not in ("redis", "rediss", "redis+socket"):
        return broker
    return f"{__name__}:Results+{broker.removeprefix('redis+')}"
