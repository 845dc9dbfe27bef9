"""Choosing the endpoint a model step goes to (SPEC §4.5) — a pure decision.

``choose`` takes what is known (the configuration, the last health records, how many
slots of each endpoint are in use: a ``Known``) and returns a ``Choice`` with a human
reason. Nothing here does I/O: the caller at the edge gathers health (``routing.check``)
and load (``routing.semaphore``) and records the choice on the step.

Rules, in order:

* within a tier, endpoints that are healthy and have a free slot win; among them the
  largest model when ``prefer_large`` (boilerplate, feature), else the least loaded;
* an endpoint whose health is unknown counts as healthy (a check never blocks dispatch);
* a tier with no healthy endpoint falls back to the next one of ``FALLBACK_ORDER``;
* a healthy tier whose every endpoint is full: ``on_saturated="wait"`` queues on its
  least-loaded endpoint; ``"fallback"`` takes the next tier with a free slot, and waits
  on the first saturated tier when none has one;
* ``forced`` pins the tier: no fallback, ``EndpointUnavailable`` when none of it is up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from overlord.core.config import Config, ModelEndpoint, Tier
from overlord.errors import EndpointUnavailable, PlanError
from overlord.routing.tiers import Complexity, TaskType, fallbacks, prefers_large, tier, tier_for

WAIT = "wait"
FALLBACK = "fallback"

_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", re.IGNORECASE)


class HealthLike(Protocol):
    """What ``choose`` needs of a health record (``routing.health.HealthRecord`` fits)."""

    @property
    def healthy(self) -> bool: ...

    @property
    def status(self) -> str: ...


Health = Mapping[str, "HealthLike | bool | None"]


@dataclass(frozen=True)
class Known:
    """What routing knows of the endpoints when it decides, gathered by the caller:
    the cached health records and the slots in use per endpoint. ``Known()`` knows
    nothing: every endpoint counts as healthy and idle."""

    health: Health = field(default_factory=dict)
    in_flight: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """Where a step goes, and why."""

    endpoint: str  # the endpoint's name in ``models:``
    queue: str  # the Celery queue of that endpoint
    tier: Tier  # the tier actually used
    model: str
    reason: str  # "preferred", "fallback: local tier unhealthy (...)", "forced tier ..."
    requested: Tier  # the tier the table (or --tier) asked for
    waiting: bool = False  # every slot of the endpoint is taken: the step queues for one
    url: str = ""

    @property
    def fallback(self) -> bool:
        return self.tier != self.requested


def model_size(endpoint: ModelEndpoint) -> float:
    """Parameter count in billions parsed from the name or model (``14b``, ``30B``), else 0."""
    sizes = [float(m) for text in (endpoint.name, endpoint.model) for m in _SIZE.findall(text)]
    return max(sizes, default=0.0)


def is_healthy(health: Health, name: str) -> bool:
    """Known-unhealthy is False; healthy or unknown is True."""
    record = health.get(name)
    if record is None:
        return True
    if isinstance(record, bool):
        return record
    return bool(record.healthy)


def _down(health: Health, endpoint: ModelEndpoint) -> str:
    record = health.get(endpoint.name)
    status = getattr(record, "status", "")
    return f"{endpoint.name} down ({status})" if status else f"{endpoint.name} down"


def _load(endpoint: ModelEndpoint, in_flight: Mapping[str, int]) -> str:
    return f"{endpoint.name} {in_flight.get(endpoint.name, 0)}/{endpoint.concurrent}"


def _ratio(endpoint: ModelEndpoint, in_flight: Mapping[str, int]) -> float:
    return in_flight.get(endpoint.name, 0) / endpoint.concurrent


def _pick(
    candidates: list[ModelEndpoint], in_flight: Mapping[str, int], prefer_large: bool
) -> ModelEndpoint:
    order = {id(e): i for i, e in enumerate(candidates)}

    def key(e: ModelEndpoint) -> tuple[float, float, int]:
        size = -model_size(e) if prefer_large else 0.0
        return (size, _ratio(e, in_flight), order[id(e)])

    return min(candidates, key=key)


def _least_loaded(candidates: list[ModelEndpoint], in_flight: Mapping[str, int]) -> ModelEndpoint:
    order = {id(e): i for i, e in enumerate(candidates)}
    return min(candidates, key=lambda e: (_ratio(e, in_flight), order[id(e)]))


def _make(endpoint: ModelEndpoint, requested: Tier, reason: str, waiting: bool = False) -> Choice:
    return Choice(
        endpoint=endpoint.name,
        queue=endpoint.queue_name,
        tier=endpoint.tier,
        model=endpoint.model,
        reason=reason,
        requested=requested,
        waiting=waiting,
        url=endpoint.endpoint,
    )


def _waiting(endpoint: ModelEndpoint, in_flight: Mapping[str, int]) -> str:
    return f"saturated: waiting for a slot ({_load(endpoint, in_flight)} in use)"


def choose(
    config: Config,
    wanted: Tier | str,
    *,
    health: Health,
    in_flight: Mapping[str, int],
    forced: bool = False,
    on_saturated: str | None = None,
    prefer_large: bool = False,
) -> Choice:
    """The endpoint for work of tier ``wanted``; see the module docstring for the rules.

    ``on_saturated`` defaults to ``config.dispatch.on_saturated`` ("wait").
    """
    requested = tier(wanted)
    mode = on_saturated or config.dispatch.on_saturated
    if mode not in (WAIT, FALLBACK):
        raise PlanError(f"on_saturated must be 'wait' or 'fallback', not {mode!r}")
    by_tier: dict[Tier, list[ModelEndpoint]] = {}
    for endpoint in config.models.values():
        by_tier.setdefault(endpoint.tier, []).append(endpoint)

    if forced:
        return _forced(requested, by_tier.get(requested, []), health, in_flight, prefer_large)

    tiers = fallbacks(requested)
    if not any(by_tier.get(t) for t in tiers):
        names = " or ".join(t.value for t in tiers)
        raise EndpointUnavailable(
            f"no model endpoint of tier {names} is configured",
            "add endpoints under `models:` in the config (see SPEC §1)",
        )
    notes: list[str] = []
    down: list[str] = []
    wait_on: tuple[ModelEndpoint, list[str]] | None = None
    for current in tiers:
        endpoints = by_tier.get(current, [])
        if not endpoints:
            notes.append(f"no {current} endpoint configured")
            continue
        healthy = [e for e in endpoints if is_healthy(health, e.name)]
        if not healthy:
            gone = [_down(health, e) for e in endpoints]
            down.extend(gone)
            notes.append(f"{current} tier unhealthy ({', '.join(gone)})")
            continue
        free = [e for e in healthy if in_flight.get(e.name, 0) < e.concurrent]
        if free:
            chosen = _pick(free, in_flight, prefer_large)
            reason = "preferred" if current == requested else "fallback: " + "; ".join(notes)
            return _make(chosen, requested, reason)
        target = _least_loaded(healthy, in_flight)
        if mode == WAIT:
            reason = _waiting(target, in_flight)
            if current != requested:
                reason = "fallback: " + "; ".join(notes) + "; " + reason
            return _make(target, requested, reason, waiting=True)
        if wait_on is None:
            wait_on = (target, list(notes))
        notes.append(
            f"{current} tier saturated ({', '.join(_load(e, in_flight) for e in healthy)})"
        )
    if wait_on is not None:
        target, before = wait_on
        reason = _waiting(target, in_flight) + " (no later tier has a free slot)"
        if target.tier != requested:
            reason = "fallback: " + "; ".join(before) + "; " + reason
        return _make(target, requested, reason, waiting=True)
    raise EndpointUnavailable(
        f"no healthy model endpoint for tier {requested} or its fallbacks: {', '.join(down)}",
        "start the model servers (then `overlord models --check` refreshes the cached health),"
        " or fix their URLs under `models:` in the config",
    )


def _forced(
    requested: Tier,
    endpoints: list[ModelEndpoint],
    health: Health,
    in_flight: Mapping[str, int],
    prefer_large: bool,
) -> Choice:
    if not endpoints:
        raise EndpointUnavailable(
            f"tier {requested} was forced but no endpoint of that tier is configured",
            f"add one with `tier: {requested}` under `models:` in the config, or drop --tier",
        )
    healthy = [e for e in endpoints if is_healthy(health, e.name)]
    if not healthy:
        gone = ", ".join(_down(health, e) for e in endpoints)
        raise EndpointUnavailable(
            f"tier {requested} was forced but none of its endpoints is healthy: {gone}",
            "start the model server (then `overlord models --check`), or drop --tier",
        )
    free = [e for e in healthy if in_flight.get(e.name, 0) < e.concurrent]
    if free:
        return _make(_pick(free, in_flight, prefer_large), requested, f"forced tier {requested}")
    target = _least_loaded(healthy, in_flight)
    reason = f"forced tier {requested}; " + _waiting(target, in_flight)
    return _make(target, requested, reason, waiting=True)


def route(
    config: Config,
    kind: TaskType | str,
    level: Complexity | str = Complexity.MEDIUM,
    *,
    health: Health,
    in_flight: Mapping[str, int],
    force_tier: Tier | str | None = None,
    on_saturated: str | None = None,
) -> Choice:
    """``choose`` for a task type and complexity; ``force_tier`` is ``--tier``."""
    wanted = tier(force_tier) if force_tier else tier_for(kind, level)
    return choose(
        config,
        wanted,
        health=health,
        in_flight=in_flight,
        forced=force_tier is not None,
        on_saturated=on_saturated,
        prefer_large=prefers_large(kind),
    )
