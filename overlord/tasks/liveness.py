"""Lost workers recovered without a person (SPEC §4.3), in distributed mode.

A worker running a step keeps a key in Redis, ``overlord:running:<plan>/<step>`` (the
worker's name), alive by renewing its expiry every ``defaults.HEARTBEAT`` seconds from
``defaults.HEARTBEAT`` seconds after the step started: the step's heartbeat. A step whose
database row says ``running`` since over ``defaults.LOST_WORKER_SECONDS`` ago, whose
heartbeat key is missing or has run out (no renewal for that long), and whose worker does
not answer that it runs it, is lost: its worker died (SIGKILL, power, OOM) with the step's message unacknowledged,
which Redis would only hand out again after the visibility timeout (an hour).

Whoever notices first (the ``dispatch`` following the plan, the watchdog thread of any
``overlord worker`` and of ``overlord beat``) re-sends it: the step's unacknowledged message, with its place
in the canvas (chain, chord), is moved back to its queue as kombu's ``restore_by_tag`` does,
in one Redis transaction on the ``unacked`` hash. Guarantee: each lost attempt of a step is
re-sent by exactly one noticer, which alone records the re-send (one ``re-sent`` event) and
resets the step to pending by compare-and-set. The transaction alone does not give it:
kombu keeps a message's delivery tag when it is restored, so the redelivered message is
back in ``unacked`` under the same tag as soon as a worker takes it, and a noticer that
read the plan before the re-send (the step still ``running`` on the dead worker) would move
the running message again. So the move also marks the message with the attempt it re-sends
(``RESENT``, a property of the message, which kombu keeps through redelivery), and a
message already marked for that attempt (or a later one) is left where it is. The
redelivered step is claimed again and its idempotency check (``steps.execute``) keeps it
from acting twice.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from celery import Celery

from overlord import defaults
from overlord.core.config import Config
from overlord.core.plan import PlanState, StepState, now
from overlord.renewer import RENEWER

log = logging.getLogger(__name__)

PREFIX = "overlord:running:"
#: The message property that says for which lost attempt of its step it was re-sent.
RESENT = "overlord_resent_attempt"


def distributed(app: Celery) -> bool:
    """Whether ``app`` runs on a shared broker (not the embedded private server)."""
    url = str(app.conf.broker_url or "")
    return url.startswith(("redis://", "rediss://"))


def _redis(app: Celery) -> Any:
    from overlord.routing.broker import client

    return client(str(app.conf.broker_url))


def _beat_key(plan_id: str, step_id: str) -> str:
    return f"{PREFIX}{plan_id}/{step_id}"


class _Beats:
    """The heartbeat keys of the steps running in this process, written by the process's
    one renewal thread (``overlord.renewer``) every ``beat_every()`` seconds, the first
    time that long after the step started: a step is suspected only once it started
    ``defaults.LOST_WORKER_SECONDS`` ago, so a shorter step needs no key, and most steps
    end without a round trip to Redis for their heartbeat. A key written is deleted when
    its step ends, and never written again after (``remove`` waits for a write under
    way). Counted: a step run twice at once in this process keeps its key until both
    ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[int, list[bool], int]] = {}  # id, [written], count

    def add(self, client: Any, key: str, worker: str, ttl: int) -> None:
        with self._lock:
            if key in self._keys:
                ident, written, count = self._keys[key]
                self._keys[key] = (ident, written, count + 1)
                return
            written = [False]

            def write() -> None:
                written[0] = True  # before the call: a write that raised may have landed
                try:
                    client.set(key, worker, px=ttl)
                except Exception as exc:  # Redis hiccup: the next beat tries again
                    log.warning("heartbeat of %s not renewed: %s", key, exc)

            self._keys[key] = (RENEWER.add(beat_every(), write), written, 1)

    def remove(self, client: Any, key: str) -> None:
        with self._lock:
            ident, written, count = self._keys.pop(key)
            if count > 1:
                self._keys[key] = (ident, written, count - 1)
                return
            RENEWER.remove(ident)
        if written[0]:
            with contextlib.suppress(Exception):
                client.delete(key)


def beat_every() -> float:
    """Seconds between two writes of a running step's heartbeat key (and before the
    first): ``defaults.HEARTBEAT``, or a third of ``defaults.LOST_WORKER_SECONDS`` when
    that is less, so that a live step's key never runs out."""
    return max(0.05, min(defaults.HEARTBEAT, defaults.LOST_WORKER_SECONDS / 3))


_BEATS = _Beats()
# a forked child (a pool process) starts with none of its parent's keys or lock
os.register_at_fork(after_in_child=lambda: _Beats.__init__(_BEATS))


@contextlib.contextmanager
def heartbeat(app: Celery, plan_id: str, step_id: str, worker: str) -> Iterator[None]:
    """While the step runs, keep ``overlord:running:<plan>/<step>`` (the worker's name)
    alive, written every ``beat_every()`` seconds from that long after the start
    (distributed mode; nothing when embedded). Not a lock: a redelivered step takes it
    over (the repository lock and the step's claim keep two runs apart)."""
    if not distributed(app):
        yield
        return
    client, key = _redis(app), _beat_key(plan_id, step_id)
    _BEATS.add(client, key, worker, max(1, int(defaults.LOST_WORKER_SECONDS * 1000)))
    try:
        yield
    finally:
        _BEATS.remove(client, key)


def _still_runs(app: Celery, worker: str | None, plan_id: str, step_id: str) -> bool:
    """Whether ``worker`` answers that it runs (or holds) the step. A fresh worker under
    the same name answers, but without the step: that one is lost too."""
    if not worker:
        return False
    try:
        inspect = app.control.inspect(destination=[worker], timeout=defaults.INSPECT_TIMEOUT)
        replies = [inspect.active() or {}, inspect.reserved() or {}]
    except Exception:
        return False
    return any(
        list(task.get("args") or [])[:2] == [plan_id, step_id]
        for reply in replies
        for tasks in reply.values()
        for task in tasks
    )


def _message_tags(channel: Any, plan_id: str) -> dict[str, str]:
    """Step id → delivery tag of the plan's unacknowledged step messages."""
    found: dict[str, str] = {}
    client = channel.client
    for tag, raw in client.hscan_iter(channel.unacked_key):
        try:
            message = json.loads(raw)[0]
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        if isinstance(args, list) and len(args) == 2 and args[0] == plan_id:
            found[str(args[1])] = tag.decode() if isinstance(tag, bytes) else str(tag)
    return found


def recover(app: Celery, config: Config, plan_id: str) -> list[str]:
    """Re-send the lost steps of a running plan; one line for each step this call re-sent.

    Callers may race (the following ``dispatch``, every watchdog): each lost attempt of a
    step is re-sent, reset and recorded by exactly one of them (``_restore``)."""
    from overlord.wiring import plan_store

    if not distributed(app) or not config.state_url:
        return []
    store = plan_store(config)
    plan = store.load(plan_id)
    if plan.state is not PlanState.RUNNING:
        return []
    limit = timedelta(seconds=defaults.LOST_WORKER_SECONDS)
    suspects = [
        s
        for s in plan.steps
        if s.state is StepState.RUNNING and s.started_at and now() - s.started_at > limit
    ]
    client = _redis(app)
    suspects = [s for s in suspects if not client.exists(_beat_key(plan_id, s.id))]
    suspects = [s for s in suspects if not _still_runs(app, s.worker, plan_id, s.id)]
    if not suspects:
        return []
    sent = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        tags = _message_tags(channel, plan_id)
        for step in suspects:
            tag = tags.get(step.id)
            if tag is None or not _restore(channel, tag, step.attempts):
                continue  # someone else re-sent this attempt, or it was acknowledged
            line = (
                f"re-sent step {step.id} ({step.kind.value} {step.project or ''}): its worker "
                f"{step.worker} stopped answering"
            )
            store.reset_lost(plan_id, step.id, worker=step.worker, attempts=step.attempts)
            store.event(plan_id, step.id, "re-sent", line)
            sent.append(line)
    return sent


def _restore(channel: Any, tag: str, attempt: int) -> bool:
    """Move the unacknowledged message ``tag`` back to its queue, marked as the re-send of
    the lost ``attempt`` of its step; True if this call did. A message marked for that
    attempt already is another noticer's re-send, taken by a worker again under the same
    tag: it stays where it is (False)."""
    client = channel.client
    if not client.hexists(channel.unacked_key, tag):
        return False
    moved: list[str] = []

    def transaction(pipe: Any) -> None:
        moved.clear()  # a retry after a concurrent change starts again
        payload = pipe.hget(channel.unacked_key, tag)
        pipe.multi()
        if not payload:
            return  # acknowledged, or moved back by someone else, since the check above
        message, exchange, routing_key = json.loads(payload)
        properties = message.setdefault("properties", {})
        try:  # the broker is not trusted: a mark that is no number marks nothing
            marked = int(properties.get(RESENT, 0))
        except (TypeError, ValueError):
            marked = 0
        if marked >= attempt:
            return
        properties[RESENT] = attempt
        pipe.zrem(channel.unacked_index_key, tag)
        pipe.hdel(channel.unacked_key, tag)
        # to the end the workers take from next (BRPOP): it was due long ago
        channel._do_restore_message(message, exchange, routing_key, pipe, False)
        moved.append(tag)

    client.transaction(transaction, channel.unacked_key)
    return bool(moved)


class Watchdog(threading.Thread):
    """A worker's (or beat's) look, every ``defaults.WATCHDOG_INTERVAL`` seconds, for lost steps of
    running plans."""

    def __init__(self, app: Celery, config: Config) -> None:
        super().__init__(name="overlord-watchdog", daemon=True)
        self.app, self.config = app, config
        self.stop = threading.Event()

    def run(self) -> None:
        from overlord.wiring import plan_store

        while not self.stop.wait(defaults.WATCHDOG_INTERVAL):
            try:
                assert self.config.state_url
                for row in plan_store(self.config).list_plans("running"):
                    for line in recover(self.app, self.config, row["id"]):
                        log.warning("plan %s: %s", row["id"], line)
            except Exception as exc:  # never stop watching
                log.warning("watchdog: %s", exc)
