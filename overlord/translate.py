"""Plain language → supported instructions: the planning model translates (SPEC §3).

An adapter at the edge: it routes ``planning`` work like any model step (cached health,
fallback, ``--tier``), holds one of the endpoint's ``concurrent`` slots for the request
(global on the broker in distributed mode), and sends the text, the supported forms and
the projects with their roles. The answer is untrusted text: its size is capped, control
characters are stripped, and it only ever comes back as lines for the parser — the exact
parser stays the only thing that makes plans, and a person approves every translated plan.

Limits: one request of at most ``TRANSLATION_TIMEOUT`` seconds (and as long again to get
a slot); when the endpoint fails (refused, timed out, HTTP 5xx) it is marked unhealthy and
the request is retried once on the fallback route; never more than two requests.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from overlord import defaults
from overlord.core.config import Config, ModelEndpoint
from overlord.core.parser import LIST_HELP, SUPPORTED_FORMS
from overlord.core.plan import Translation
from overlord.errors import EndpointUnavailable, OverlordError, TranslationUnavailable
from overlord.routing import Choice, Known, TaskType, route

#: What the model is told to do (the last line of the system message).
ANSWER_RULE = "Answer with one supported instruction per line, nothing else."

# ANSI escape sequences, then any other control character but the new line
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_BULLET = re.compile(r"^(?:[-*•]|\d{1,2}[.)])\s+")


class _EndpointFailed(Exception):
    """The endpoint itself failed (refused, timed out, HTTP 5xx): worth the fallback."""


class _Unusable(Exception):
    """The endpoint answered, but not with a usable chat completion."""


@dataclass(frozen=True)
class Answer:
    """A model's translation: the cleaned answer and the lines taken from it."""

    text: str
    lines: list[str]
    choice: Choice

    def translation(self, original: str) -> Translation:
        return Translation(
            original=clean(original),
            lines=self.lines,
            answer=self.text,
            endpoint=self.choice.endpoint,
            model=self.choice.model,
            tier=self.choice.tier.value,
            route_reason=self.choice.reason,
        )


# --- the untrusted answer ------------------------------------------------------------


def clean(text: str, limit: int = defaults.TRANSLATION_MAX_ANSWER) -> str:
    """``text`` without terminal escapes or control characters (new lines kept), capped."""
    text = _ANSI.sub("", text.replace("\r\n", "\n").replace("\t", " "))
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[:limit]


def answer_lines(text: str) -> list[str]:
    """The instruction lines of an answer: blank lines, code fences and list bullets are
    dropped, each line is stripped of surrounding quotes; the parser judges the rest."""
    lines = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        line = _BULLET.sub("", line).strip().strip("`\"'").strip()
        if line:
            lines.append(line[: defaults.TRANSLATION_MAX_LINE])
    return lines


# --- the request -----------------------------------------------------------------------


def messages(config: Config, text: str) -> list[dict[str, str]]:
    """The chat request: the supported forms, the projects (role, dependencies), the text."""
    projects = []
    for name, spec in config.projects.items():
        line = f"- {name}: {spec.role}"
        if spec.depends_on:
            line += f"; depends on {', '.join(spec.depends_on)}"
        projects.append(line)
    forms = "\n".join(f"- {form}" for form in SUPPORTED_FORMS)
    system = (
        "You translate a developer's request about their git repositories into the "
        "instructions Overlord understands. The supported instructions are:\n"
        f"{forms}\n({LIST_HELP}; SRC and DST are branches.)\n"
        f"The projects (name: role):\n{chr(10).join(projects) or '- (none)'}\n"
        "Use only these project names. " + ANSWER_RULE
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def _post(endpoint: ModelEndpoint, body: dict[str, Any], timeout: float) -> str:
    """One chat completion; its message content. Reads at most a bounded response."""
    import requests

    headers = {"Content-Type": "application/json"}
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    url = endpoint.endpoint.rstrip("/") + "/chat/completions"
    deadline = time.monotonic() + timeout
    try:
        with requests.post(
            url, json=body, headers=headers, timeout=(min(5.0, timeout), timeout), stream=True
        ) as resp:
            data = b""
            for chunk in resp.iter_content(8192):
                data += chunk
                if len(data) > defaults.TRANSLATION_MAX_RESPONSE:
                    raise _Unusable(
                        f"the response is larger than {defaults.TRANSLATION_MAX_RESPONSE} bytes"
                    )
                if time.monotonic() > deadline:
                    raise _EndpointFailed(f"timed out after {timeout:g} s")
            status = resp.status_code
    except requests.Timeout:
        raise _EndpointFailed(f"timed out after {timeout:g} s") from None
    except requests.ConnectionError:
        raise _EndpointFailed("cannot reach it") from None
    except requests.RequestException as exc:
        raise _EndpointFailed(type(exc).__name__) from None
    if status >= 500:
        raise _EndpointFailed(f"HTTP {status}")
    if status >= 400:
        raise _Unusable(f"HTTP {status}")
    try:
        content = json.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Unusable("the response is not a chat completion") from None
    if not isinstance(content, str):
        raise _Unusable("the answer has no text")
    return content


# --- routing, slots, the one retry -----------------------------------------------------


def _route(config: Config, level: str, forced: str | None, known: Known) -> Choice:
    return route(
        config,
        TaskType.PLANNING,
        level,
        health=known.health,
        in_flight=known.in_flight,
        force_tier=forced,
    )


def _first_route(config: Config, level: str, forced: str | None) -> tuple[Choice, Known]:
    from overlord.routing.check import routed

    return routed(config, lambda known: (_route(config, level, forced, known), known))


def _ask(config: Config, choice: Choice, text: str, timeout: float) -> str:
    from overlord.routing.limit import slot

    endpoint = config.models[choice.endpoint]
    body = {
        "model": endpoint.model,
        "messages": messages(config, text),
        "temperature": 0,
        "max_tokens": defaults.TRANSLATION_MAX_TOKENS,
    }
    try:
        with slot(config, endpoint, config.broker_url, timeout):
            return _post(endpoint, body, timeout)
    except OverlordError as exc:  # no free slot in time
        raise TranslationUnavailable(exc.message) from None
    except (_EndpointFailed, _Unusable):
        raise
    except Exception as exc:  # the broker holding the slots is unreachable
        raise TranslationUnavailable(
            f"the endpoint slots cannot be taken: {type(exc).__name__}: {exc}"
        ) from None


def _with_down(config: Config, known: Known, record: Any) -> Known:
    """What is known after ``record`` (an endpoint found down), with the slots in use now."""
    from overlord.routing.check import in_flight_now

    health = {**known.health, record.endpoint: record}
    return Known(health, in_flight_now(config))


def _mark_down(config: Config, name: str, reason: str) -> Any:
    """Record the endpoint as down (the cache failing to write only loses the record)."""
    from overlord.routing.check import health_cache
    from overlord.routing.health import HealthRecord, mark_unhealthy, utcnow

    try:
        return mark_unhealthy(health_cache(config), name, reason)
    except Exception:
        return HealthRecord(name, False, reason, utcnow(), None)


def translate(
    config: Config,
    text: str,
    *,
    tier: str | None = None,
    complexity: str | None = None,
    timeout: float = defaults.TRANSLATION_TIMEOUT,
) -> Answer:
    """Ask the planning model for supported instructions; raises ``TranslationUnavailable``
    (with why) when none can answer. The answer's lines are not parsed here."""
    if not config.models:
        raise TranslationUnavailable(
            "no model endpoint is configured", "add one under `models:` in the config"
        )
    if len(text) > defaults.TRANSLATION_MAX_TEXT:
        raise TranslationUnavailable(
            f"the text is longer than {defaults.TRANSLATION_MAX_TEXT} characters"
        )
    level = complexity or "medium"
    try:
        choice, known = _first_route(config, level, tier)
    except EndpointUnavailable as exc:
        raise TranslationUnavailable(exc.message, exc.hint) from None
    for attempt in (1, 2):
        try:
            content = _ask(config, choice, clean(text), timeout)
        except _Unusable as exc:
            raise TranslationUnavailable(
                f"{choice.endpoint} gave no usable answer: {exc}"
            ) from None
        except _EndpointFailed as exc:
            failure = f"{choice.endpoint} failed ({exc})"
            down = _mark_down(config, choice.endpoint, str(exc))
            if attempt == 2:
                raise TranslationUnavailable(f"{failure}, after one retry") from None
            known = _with_down(config, known, down)
            try:
                fallback = _route(config, level, tier, known)
            except EndpointUnavailable as unavailable:
                raise TranslationUnavailable(
                    f"{failure}; no fallback: {unavailable.message}"
                ) from None
            choice = replace(fallback, reason=f"fallback: {failure}; {fallback.reason}")
            continue
        answer = clean(content)
        return Answer(text=answer, lines=answer_lines(answer), choice=choice)
    raise AssertionError("unreachable")  # pragma: no cover
