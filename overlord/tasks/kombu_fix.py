"""A worker survives a broker restart (SPEC §4.3): a work-around for kombu's Redis transport.

When a worker's connection to Redis is lost, Celery closes it; closing the channel
restores the messages it holds unacknowledged, which needs a new Redis client, whose
parameters kombu (5.7) reads from the transport's ``client`` — already ``None`` once the
connection was closed. The ``AttributeError`` (``'NoneType' object has no attribute
'hostname'``) is not one of the connection errors Celery expects there, so it treats it
as unrecoverable and the worker exits, leaving its plan running with no one to finish
it. Patched here: a closed transport answers as a lost connection (redis-py's
``ConnectionError``), which kombu's and Celery's close paths ignore; the worker then
reconnects as it does for any lost connection. The messages stay unacknowledged in Redis
(nothing is lost); the steps keep running and are recorded in the state database, and a
later redelivery finds them finished (``steps.execute``) and does not act again.
"""

from __future__ import annotations

import functools
from typing import Any

_applied = False


def apply() -> None:
    """Patch ``kombu.transport.redis.Channel._connparams`` once per process."""
    global _applied
    if _applied:
        return
    from kombu.transport import redis as transport
    from redis.exceptions import ConnectionError as RedisConnectionError

    original = transport.Channel._connparams

    @functools.wraps(original)
    def connparams(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return original(self, *args, **kwargs)

    setattr(transport.Channel, "_connparams", connparams)  # noqa: B010 - a method patched
    _applied = True
