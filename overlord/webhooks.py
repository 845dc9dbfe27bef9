"""The background sender of plan notifications: one thread per delivery, a POST with the
standard library (``urllib``), ``defaults.WEBHOOK_TIMEOUT`` seconds per attempt,
``defaults.WEBHOOK_ATTEMPTS`` attempts with backoff, and each outcome recorded on the plan as a ``notify`` event (which
``overlord plans show`` lists). Nothing here is ever raised to the plan.

A process that made a transition must not exit with a delivery in flight unrecorded:
``drain`` waits (bounded) for the deliveries of this process, then records each one still
running as not delivered. The CLI drains when a command ends, Celery pool processes when
they shut down, any other process at exit.
"""

from __future__ import annotations

import atexit
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from overlord import defaults, notify
from overlord.core.config import Config, Webhook
from overlord.core.plan import PlanState

_lock = threading.Lock()
_inflight: set[Delivery] = set()
_done = threading.Condition(_lock)
_atexit = [False]


@dataclass(eq=False)
class Result:
    """How one delivery ended."""

    label: str
    ok: bool
    detail: str
    attempts: int = 0

    def line(self) -> str:
        return f"{self.label}: {'delivered' if self.ok else 'not delivered'} ({self.detail})"


@dataclass(eq=False)
class Delivery:
    """One notification to one webhook, sent by its own thread."""

    config: Config
    plan_id: str
    state: PlanState
    index: int
    hook: Webhook
    attempt: int = 0
    recorded: bool = False
    result: Result | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def label(self) -> str:
        return notify.label(self.index, self.hook)

    def run(self) -> None:
        try:
            said = self._facts()
            self.finish(self._send(notify.payload(self.hook, said)))
        except Exception as exc:  # never raised to anyone: recorded
            self.finish(Result(self.label, False, f"error: {type(exc).__name__}"))
        finally:
            with _done:
                _inflight.discard(self)
                _done.notify_all()

    def _facts(self) -> notify.Facts:
        from overlord.wiring import plan_store

        assert self.config.state_url
        plan = plan_store(self.config).load(self.plan_id)
        return notify.facts(plan, self.state, self.config)

    def _send(self, body: dict[str, object]) -> Result:
        url = notify.target(self.hook)
        if url is None:
            return Result(self.label, False, f"${self.hook.url_env} is not set")
        return post(url, body, self.label, self)

    def finish(self, result: Result) -> None:
        """Record ``result`` on the plan, once (the sender or ``drain``, whichever first)."""
        with self._guard:
            if self.recorded:
                return
            self.recorded = True
            self.result = result
        try:
            from overlord.wiring import plan_store

            assert self.config.state_url
            message = f"{notify.event_for(self.state)} -> {result.line()}"
            plan_store(self.config).event(self.plan_id, None, "notify", message)
        except Exception:
            pass


def post(url: str, body: dict[str, object], label: str, delivery: Delivery | None = None) -> Result:
    """POST ``body`` as JSON to ``url``: up to ``defaults.WEBHOOK_ATTEMPTS`` attempts with backoff. The
    result names the webhook by ``label`` and never holds the URL."""
    if not url.startswith(("http://", "https://")):
        return Result(label, False, "not an http:// or https:// URL")
    data = json.dumps(body).encode()
    problem = ""
    for attempt in range(1, defaults.WEBHOOK_ATTEMPTS + 1):
        if delivery is not None:
            delivery.attempt = attempt
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "overlord-notify"},
        )
        try:
            with urllib.request.urlopen(request, timeout=defaults.WEBHOOK_TIMEOUT) as response:
                response.read(1024)
                status = response.status
            if 200 <= status < 300:
                return Result(
                    label,
                    True,
                    f"HTTP {status}, attempt {attempt} of {defaults.WEBHOOK_ATTEMPTS}",
                    attempt,
                )
            problem = f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except urllib.error.URLError as exc:
            problem = _reason(exc.reason)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            problem = _reason(exc)
        problem = problem.replace(url, "<url>")
        if attempt < defaults.WEBHOOK_ATTEMPTS:
            time.sleep(defaults.WEBHOOK_BACKOFF[min(attempt, len(defaults.WEBHOOK_BACKOFF)) - 1])
    return Result(
        label,
        False,
        f"{problem} after {defaults.WEBHOOK_ATTEMPTS} attempts",
        defaults.WEBHOOK_ATTEMPTS,
    )


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {defaults.WEBHOOK_TIMEOUT:.0f} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return reason if isinstance(reason, str) else type(reason).__name__


def send(config: Config, plan_id: str, state: PlanState, hooks: list[tuple[int, Webhook]]) -> None:
    """Start one delivery thread per webhook and return at once."""
    _drain_at_exit()
    for index, hook in hooks:
        delivery = Delivery(config, plan_id, state, index, hook)
        with _done:
            _inflight.add(delivery)
        thread = threading.Thread(
            target=delivery.run, name=f"overlord-notify-{plan_id}-{index}", daemon=True
        )
        thread.start()


def _drain_at_exit() -> None:
    with _lock:
        if not _atexit[0]:
            _atexit[0] = True
            atexit.register(drain)


def pending() -> int:
    """Deliveries of this process still in flight."""
    with _done:
        return len(_inflight)


def wait_idle(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for this process's deliveries; True when none is left."""
    deadline = time.monotonic() + timeout
    with _done:
        while _inflight and time.monotonic() < deadline:
            _done.wait(max(0.0, deadline - time.monotonic()))
        return not _inflight


def drain(timeout: float = defaults.WEBHOOK_EXIT_WAIT) -> int:
    """Wait up to ``timeout`` seconds for this process's deliveries; record each one still
    in flight as not delivered. Returns how many were cut short."""
    wait_idle(timeout)
    with _done:
        left = list(_inflight)
        _inflight.clear()  # given up on: a later drain (at exit) does not wait again
    for delivery in left:
        delivery.finish(
            Result(
                delivery.label,
                False,
                f"the process exited during attempt {max(1, delivery.attempt)} of {defaults.WEBHOOK_ATTEMPTS}",
                delivery.attempt,
            )
        )
    return len(left)


def send_test(config: Config) -> list[Result]:
    """``overlord notify --test``: a sample notification to every webhook, now."""
    said = notify.Facts(
        plan="0000000000",
        state="test",
        task="overlord notify --test",
        projects=sorted(config.projects)[:3],
        approve="overlord approve 0000000000",
    )
    results: list[Result] = []
    threads = []

    def one(index: int, hook: Webhook) -> None:
        label = notify.label(index, hook)
        url = notify.target(hook)
        if url is None:
            results.append(Result(label, False, f"${hook.url_env} is not set"))
            return
        results.append(post(url, notify.payload(hook, said), label))

    for index, hook in enumerate(config.notify, 1):
        thread = threading.Thread(target=one, args=(index, hook), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    order = {notify.label(i, h): i for i, h in enumerate(config.notify, 1)}
    return sorted(results, key=lambda r: order[r.label])
