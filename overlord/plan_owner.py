"""Which process runs a plan (recorded when it starts), and whether that process is
still alive: an embedded plan whose process died can be resumed or rolled back."""

from __future__ import annotations

import os
import socket


def owner_of(embedded: bool) -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "embedded": embedded}


def owner_alive(owner: dict[str, object]) -> bool:
    """Whether the process that ran an embedded plan is still alive on this machine."""
    if not owner.get("embedded"):
        return True  # distributed: workers own the steps; the broker redelivers
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(str(owner.get("pid"))), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return int(str(owner.get("pid"))) != os.getpid()  # this process is not running it now
