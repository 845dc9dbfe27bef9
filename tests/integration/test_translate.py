"""The translation adapter (SPEC §3, text no form matches) against the test suite's own
OpenAI-compatible server: the request, the untrusted answer, fallback, one retry, limits,
and the endpoint's ``concurrent`` (global on Redis in distributed mode)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from overlord import translate
from overlord.core import config as config_module
from overlord.core.config import Config
from overlord.core.parser import SUPPORTED_FORMS
from overlord.errors import TranslationUnavailable
from overlord.routing.semaphore import Semaphore
from tests.dispatch_helpers import configure
from tests.kit import Workspace
from tests.openai_server import ScriptedOpenAI


def endpoint(server: ScriptedOpenAI, *, tier: str = "cloud-fast", concurrent: int = 2) -> dict:
    return {
        "endpoint": server.url,
        "model": "planner-model",
        "tier": tier,
        "concurrent": concurrent,
        "health_check_url": server.health_url,
    }


def with_models(ws: Workspace, models: dict[str, Any], **extra: Any) -> Config:
    return configure(ws, models=models, **extra)


def test_the_request_carries_text_forms_projects_and_the_rule(
    synced_workspace: Workspace,
) -> None:
    with ScriptedOpenAI([{"content": "run tests in core\nrun tests in api"}]) as server:
        config = with_models(synced_workspace, {"planner": endpoint(server)})
        answer = translate.translate(config, "check that core and api still work")
    assert answer.lines == ["run tests in core", "run tests in api"]
    assert answer.choice.endpoint == "planner" and answer.choice.tier.value == "cloud-fast"
    assert server.chat_count == 1
    body = server.requests[0]["json"]
    assert body["model"] == "planner-model"
    system, user = body["messages"]
    assert user == {"role": "user", "content": "check that core and api still work"}
    assert all(form in system["content"] for form in SUPPORTED_FORMS)
    assert "- core: shared-library" in system["content"]
    assert "- web: application; depends on core, api" in system["content"]
    assert system["content"].endswith(translate.ANSWER_RULE)


def test_the_answer_is_untrusted_text(synced_workspace: Workspace) -> None:
    raw = (
        "```\n1. run tests in core\x1b[31m\n- `tag core 1.0`\n\n* clean stale branches"
        " in api\x07\r\n```\n" + "x" * 50_000
    )
    with ScriptedOpenAI([{"content": raw}]) as server:
        config = with_models(synced_workspace, {"planner": endpoint(server)})
        answer = translate.translate(config, "do the usual")
    assert answer.lines[:3] == ["run tests in core", "tag core 1.0", "clean stale branches in api"]
    assert "\x1b" not in answer.text and "\x07" not in answer.text and "\r" not in answer.text
    assert len(answer.text) <= translate.defaults.TRANSLATION_MAX_ANSWER
    assert all(len(line) <= translate.defaults.TRANSLATION_MAX_LINE for line in answer.lines)


def test_an_endpoint_failing_at_call_time_falls_back_once(synced_workspace: Workspace) -> None:
    with (
        ScriptedOpenAI([{"status": 500}]) as first,
        ScriptedOpenAI([{"content": "run tests in core"}]) as second,
    ):
        config = with_models(
            synced_workspace,
            {"a-first": endpoint(first), "b-second": endpoint(second, tier="cloud-heavy")},
        )
        answer = translate.translate(config, "check core")
    assert (first.chat_count, second.chat_count) == (1, 1)
    assert answer.choice.endpoint == "b-second"
    assert "fallback: a-first failed (HTTP 500)" in answer.choice.reason


def test_one_retry_at_most(synced_workspace: Workspace) -> None:
    with (
        ScriptedOpenAI([{"status": 502}] * 3) as first,
        ScriptedOpenAI([{"status": 503}] * 3) as second,
        ScriptedOpenAI([{"status": 503}] * 3) as third,
    ):
        config = with_models(
            synced_workspace,
            {"a": endpoint(first), "b": endpoint(second), "c": endpoint(third, tier="cloud-heavy")},
        )
        with pytest.raises(TranslationUnavailable, match="after one retry"):
            translate.translate(config, "check core")
        assert first.chat_count + second.chat_count + third.chat_count == 2


def test_a_slow_model_times_out(synced_workspace: Workspace) -> None:
    with ScriptedOpenAI([{"sleep": 5, "content": "run tests in core"}]) as server:
        config = with_models(synced_workspace, {"planner": endpoint(server)})
        with pytest.raises(TranslationUnavailable, match="timed out after 0.5 s") as info:
            translate.translate(config, "check core", timeout=0.5)
        assert "no fallback" in info.value.message
        assert server.chat_count == 1


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"raw": b"x" * 200_000}, "larger than"),
        ({"raw": "not json"}, "not a chat completion"),
        ({"status": 401}, "HTTP 401"),
    ],
)
def test_an_unusable_response_is_not_retried(
    synced_workspace: Workspace, entry: dict[str, Any], why: str
) -> None:
    with ScriptedOpenAI([entry]) as server:
        config = with_models(synced_workspace, {"planner": endpoint(server)})
        with pytest.raises(TranslationUnavailable, match=why):
            translate.translate(config, "check core")
        assert server.chat_count == 1


def test_no_model_and_every_tier_down(synced_workspace: Workspace) -> None:
    config = config_module.load(synced_workspace.config_path)
    with pytest.raises(TranslationUnavailable, match="no model endpoint is configured"):
        translate.translate(config, "check core")
    with ScriptedOpenAI(health_status=503) as server:
        config = with_models(synced_workspace, {"planner": endpoint(server)})
        with pytest.raises(TranslationUnavailable, match=r"planner down \(HTTP 503\)"):
            translate.translate(config, "check core")
        assert server.chat_count == 0
    # a local-only configuration: planning work never routes down to the local tier
    with ScriptedOpenAI() as server:
        config = with_models(synced_workspace, {"planner": endpoint(server, tier="local")})
        with pytest.raises(TranslationUnavailable, match="cloud-fast or cloud-heavy"):
            translate.translate(config, "check core")
        assert server.chat_count == 0


def test_the_endpoint_limit_holds_in_one_process(synced_workspace: Workspace) -> None:
    with ScriptedOpenAI([{"content": "run tests in core"}] * 4, delay=0.3) as server:
        config = with_models(synced_workspace, {"planner": endpoint(server, concurrent=1)})
        errors: list[BaseException] = []

        def one() -> None:
            try:
                translate.translate(config, "check core")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert server.chat_count == 4
    assert server.max_concurrent == 1


@pytest.mark.redis
def test_the_request_counts_against_the_global_limit(
    synced_workspace: Workspace, redis_url: str, tmp_path: Path
) -> None:
    """Distributed mode: a slot held elsewhere (a minion on another machine) is respected;
    while translating, the request holds one of the endpoint's slots on the broker."""
    import redis

    name = f"planner-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    seen: list[int] = []
    with ScriptedOpenAI() as server:
        config = with_models(
            synced_workspace, {name: endpoint(server, concurrent=1)}, broker_url=redis_url
        )
        semaphore = Semaphore.for_endpoint(client, config.models[name], lease_seconds=30)

        def answer(body: dict[str, Any]) -> dict[str, Any]:
            seen.append(semaphore.in_use())
            return {"content": "run tests in core"}

        server.add(answer)
        try:
            token = semaphore.acquire(timeout=0)
            assert token is not None
            with pytest.raises(TranslationUnavailable, match="no free slot"):
                translate.translate(config, "check core", timeout=0.5)
            assert server.chat_count == 0
            semaphore.release(token)
            assert translate.translate(config, "check core").lines == ["run tests in core"]
            assert seen == [1]  # the request held the endpoint's one slot
            assert semaphore.in_use() == 0
        finally:
            client.delete(f"overlord:health:{name}", semaphore.key)
