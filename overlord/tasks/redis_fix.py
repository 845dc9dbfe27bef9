"""redis-py reads its own version from the installed package's metadata
(``importlib.metadata.version("redis")``, ~1.5-2 ms of file system scanning) every time a
client is created, to name itself to the server; kombu and Celery create a client per
channel, per result consumer and per pool, so an embedded run paid that a dozen times on
its critical path. The version cannot change while the process runs: read once here.
"""

from __future__ import annotations

import functools

_applied = False


def apply() -> None:
    """Make ``redis.utils.get_lib_version`` answer from a cache (once per process)."""
    global _applied
    if _applied:
        return
    from redis import utils

    original = getattr(utils, "get_lib_version", None)
    if callable(original):  # a redis-py without it needs nothing
        setattr(utils, "get_lib_version", functools.cache(original))  # noqa: B010
    _applied = True
