"""``overlord.renewer``: one thread calls every registered function at its interval; once
``remove`` returns, the function is not running and never runs again."""

from __future__ import annotations

import os
import threading
import time

from overlord.renewer import Renewer


def _wait_for(check, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_calls_each_at_its_interval_from_one_thread() -> None:
    renewer = Renewer()
    calls: dict[str, list[str]] = {"fast": [], "slow": []}
    fast = renewer.add(0.02, lambda: calls["fast"].append(threading.current_thread().name))
    slow = renewer.add(0.2, lambda: calls["slow"].append(threading.current_thread().name))
    assert calls == {"fast": [], "slow": []}  # the first call is one interval away
    _wait_for(lambda: len(calls["slow"]) >= 1)
    assert len(calls["fast"]) >= 5
    assert set(calls["fast"] + calls["slow"]) == {"overlord-renewer"}
    renewer.remove(fast)
    renewer.remove(slow)
    _wait_for(lambda: renewer._thread is None)  # nothing left: the thread ends
    again: list[int] = []
    renewer.remove(renewer.add(0.01, lambda: again.append(1)))  # and a new one starts
    _wait_for(lambda: renewer._thread is None)


def test_remove_waits_for_a_running_call_and_none_runs_after() -> None:
    renewer = Renewer()
    inside, release = threading.Event(), threading.Event()
    calls: list[float] = []

    def slow() -> None:
        calls.append(time.monotonic())
        inside.set()
        release.wait()

    ident = renewer.add(0.01, slow)
    assert inside.wait(2)
    removed = threading.Event()
    remover = threading.Thread(target=lambda: (renewer.remove(ident), removed.set()))
    remover.start()
    time.sleep(0.05)
    assert not removed.is_set()  # the call is still running
    release.set()
    remover.join(2)
    assert removed.is_set()
    count = len(calls)
    time.sleep(0.1)
    assert len(calls) == count == 1


def test_a_failing_call_is_tried_again() -> None:
    renewer = Renewer()
    tries: list[int] = []

    def flaky() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("redis hiccup")

    ident = renewer.add(0.01, flaky)
    _wait_for(lambda: len(tries) >= 4)
    renewer.remove(ident)


def test_a_forked_child_holds_nothing() -> None:
    from overlord.renewer import RENEWER

    ident = RENEWER.add(60, lambda: None)
    try:
        pid = os.fork()
        if pid == 0:  # the child: no work, no thread, and adding works
            ok = not RENEWER._work and RENEWER._thread is None
            RENEWER.remove(RENEWER.add(60, lambda: None))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        RENEWER.remove(ident)
