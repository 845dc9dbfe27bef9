"""Model routing: the tier table (SPEC §4.5) and the choice of an endpoint."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from overlord.core.config import Config, Tier, parse
from overlord.errors import EndpointUnavailable, PlanError
from overlord.routing import (
    FALLBACK_ORDER,
    Complexity,
    TaskType,
    choose,
    fallbacks,
    model_size,
    prefers_large,
    route,
    tier_for,
)
from overlord.routing.health import HealthRecord

L, F, H = Tier.LOCAL, Tier.CLOUD_FAST, Tier.CLOUD_HEAVY

# The seed table, written out cell by cell: task type -> (low, medium, high).
TABLE = {
    "format": (L, L, L),
    "lint": (L, L, L),
    "boilerplate": (L, L, L),
    "feature": (L, L, F),
    "review": (F, F, F),
    "debugging": (F, F, H),
    "architecture": (F, F, H),
    "planning": (F, F, H),
}
CELLS = [
    (kind, level, tiers[i])
    for kind, tiers in TABLE.items()
    for i, level in enumerate(("low", "medium", "high"))
]

SEED_MODELS: dict[str, Any] = {
    "local-14b": {
        "endpoint": "http://127.0.0.1:5000/v1",
        "model": "qwen2.5-coder-14b",
        "tier": "local",
        "concurrent": 2,
        "health_check_url": "http://127.0.0.1:5000/health",
    },
    "local-30b": {
        "endpoint": "http://127.0.0.1:8080/v1",
        "model": "qwen3-coder-30b",
        "tier": "local",
        "concurrent": 2,
    },
    "cloud-fast": {
        "endpoint": "https://api.anthropic.com/v1",
        "model": "claude-haiku-4-5",
        "tier": "cloud-fast",
        "concurrent": 10,
        "api_key_env": "ANTHROPIC_API_KEY",
    },
    "cloud-heavy": {
        "endpoint": "https://api.anthropic.com/v1",
        "model": "claude-sonnet-4-5",
        "tier": "cloud-heavy",
        "concurrent": 3,
        "api_key_env": "ANTHROPIC_API_KEY",
    },
}


def make_config(models: dict[str, Any] | None = None, **dispatch: Any) -> Config:
    data: dict[str, Any] = {"models": SEED_MODELS if models is None else models}
    if dispatch:
        data["dispatch"] = dispatch
    return parse(yaml.safe_dump(data), Path("/nonexistent/overlord.yml"))


def down(name: str, status: str = "connection refused") -> HealthRecord:
    return HealthRecord(name, False, status, datetime.now(UTC), None)


# --- the tier table ---------------------------------------------------------


def test_table_covers_every_task_type() -> None:
    assert set(TABLE) == {t.value for t in TaskType}
    assert len(CELLS) == len(TaskType) * len(Complexity)


@pytest.mark.parametrize(("kind", "level", "expected"), CELLS)
def test_tier_for_follows_the_seed_table(kind: str, level: str, expected: Tier) -> None:
    assert tier_for(kind, level) is expected
    assert tier_for(TaskType(kind), Complexity(level)) is expected


def test_tier_for_accepts_any_case_and_defaults_to_medium() -> None:
    assert tier_for("Feature", "HIGH") is F
    assert tier_for("debugging") is F
    assert tier_for("planning", "high") is H


@pytest.mark.parametrize(("kind", "level"), [("git", "low"), ("feature", "extreme")])
def test_unknown_task_type_or_complexity_is_a_plan_error(kind: str, level: str) -> None:
    with pytest.raises(PlanError) as info:
        tier_for(kind, level)
    assert info.value.hint and "use one of" in info.value.hint


def test_fallback_order_and_fallbacks() -> None:
    assert FALLBACK_ORDER == [L, F, H]
    assert fallbacks(L) == [L, F, H]
    assert fallbacks("cloud-fast") == [F, H]
    assert fallbacks(H) == [H]


def test_prefers_large_only_for_boilerplate_and_feature() -> None:
    assert {t for t in TaskType if prefers_large(t)} == {TaskType.BOILERPLATE, TaskType.FEATURE}


@pytest.mark.parametrize(
    ("name", "model", "size"),
    [
        ("local-14b", "whatever", 14),
        ("local-prime", "Qwen2.5-Coder-14B", 14),
        ("local-edge", "qwen3-coder-30b", 30),
        ("moe", "qwen3-30b-a3b", 30),
        ("local-7.5b", "x", 7.5),
        ("cloud-fast", "claude-haiku-4-5", 0),
    ],
)
def test_model_size(name: str, model: str, size: float) -> None:
    config = make_config({name: {"endpoint": "http://x/v1", "model": model, "tier": "local"}})
    assert model_size(config.models[name]) == size


# --- choosing an endpoint -----------------------------------------------------


def test_healthy_local_tier_is_preferred() -> None:
    choice = choose(make_config(), "local", health={}, in_flight={})
    assert choice.tier is L and choice.reason == "preferred" and not choice.fallback
    assert choice.queue == choice.endpoint
    assert not choice.waiting


def test_prefer_large_picks_the_30b_model() -> None:
    config = make_config()
    assert choose(config, L, health={}, in_flight={}, prefer_large=True).endpoint == "local-30b"
    # without the preference the least-loaded endpoint wins (config order on ties)
    assert choose(config, L, health={}, in_flight={}).endpoint == "local-14b"
    assert choose(config, L, health={}, in_flight={"local-14b": 1}).endpoint == "local-30b"


def test_prefer_large_falls_to_the_smaller_model_when_the_larger_is_full_or_down() -> None:
    config = make_config()
    full = choose(config, L, health={}, in_flight={"local-30b": 2}, prefer_large=True)
    assert full.endpoint == "local-14b" and full.reason == "preferred"
    sick = choose(config, L, health={"local-30b": False}, in_flight={}, prefer_large=True)
    assert sick.endpoint == "local-14b"


def test_seed_scenario_5_local_tier_down_falls_back_to_cloud_fast() -> None:
    health = {"local-14b": down("local-14b"), "local-30b": down("local-30b", "HTTP 500")}
    choice = route(make_config(), "feature", "medium", health=health, in_flight={})
    assert choice.endpoint == "cloud-fast" and choice.tier is F
    assert choice.requested is L and choice.fallback
    assert choice.reason == (
        "fallback: local tier unhealthy "
        "(local-14b down (connection refused), local-30b down (HTTP 500))"
    )


def test_bool_health_and_unknown_health() -> None:
    config = make_config()
    choice = choose(config, L, health={"local-14b": False, "local-30b": False}, in_flight={})
    assert choice.reason == "fallback: local tier unhealthy (local-14b down, local-30b down)"
    # unknown (no record) counts as healthy: a missing check never blocks dispatch
    assert choose(config, L, health={"local-14b": False}, in_flight={}).endpoint == "local-30b"
    assert choose(config, L, health={"local-14b": None}, in_flight={}).endpoint == "local-14b"


def test_fallback_skips_unhealthy_tiers_in_order() -> None:
    health = {"local-14b": False, "local-30b": False, "cloud-fast": False}
    choice = choose(make_config(), L, health=health, in_flight={})
    assert choice.endpoint == "cloud-heavy"
    assert "local tier unhealthy" in choice.reason and "cloud-fast tier unhealthy" in choice.reason


def test_a_tier_never_falls_back_to_a_cheaper_one() -> None:
    with pytest.raises(EndpointUnavailable) as info:
        choose(make_config(), H, health={"cloud-heavy": down("cloud-heavy")}, in_flight={})
    assert "cloud-heavy down (connection refused)" in str(info.value)


def test_saturated_tier_waits_by_default() -> None:
    config = make_config()
    choice = choose(config, L, health={}, in_flight={"local-14b": 2, "local-30b": 3})
    assert choice.waiting and choice.endpoint == "local-14b" and choice.tier is L
    assert choice.reason == "saturated: waiting for a slot (local-14b 2/2 in use)"


def test_saturated_tier_falls_back_when_asked() -> None:
    config = make_config()
    busy = {"local-14b": 2, "local-30b": 2}
    choice = choose(config, L, health={}, in_flight=busy, on_saturated="fallback")
    assert choice.endpoint == "cloud-fast" and not choice.waiting
    assert choice.reason == "fallback: local tier saturated (local-14b 2/2, local-30b 2/2)"


def test_on_saturated_comes_from_the_config() -> None:
    config = make_config(on_saturated="fallback")
    busy = {"local-14b": 2, "local-30b": 2}
    assert choose(config, L, health={}, in_flight=busy).endpoint == "cloud-fast"
    assert choose(config, L, health={}, in_flight=busy, on_saturated="wait").waiting


def test_fallback_mode_waits_on_the_original_tier_when_later_tiers_are_full() -> None:
    busy = {"local-14b": 2, "local-30b": 1, "cloud-fast": 10, "cloud-heavy": 3}
    choice = choose(make_config(), L, health={}, in_flight=busy, on_saturated="fallback")
    assert choice.endpoint == "local-30b" and choice.reason == "preferred"
    busy["local-30b"] = 2
    choice = choose(make_config(), L, health={}, in_flight=busy, on_saturated="fallback")
    assert choice.waiting and choice.tier is L and choice.endpoint == "local-14b"
    assert choice.reason.startswith("saturated: waiting for a slot")


def test_fallback_mode_skips_unhealthy_later_tier_to_a_free_one() -> None:
    busy = {"local-14b": 2, "local-30b": 2}
    choice = choose(
        make_config(),
        L,
        health={"cloud-fast": False},
        in_flight=busy,
        on_saturated="fallback",
    )
    assert choice.endpoint == "cloud-heavy" and not choice.waiting


def test_down_then_saturated_fallback_tier_waits_there() -> None:
    health = {"local-14b": False, "local-30b": False}
    choice = choose(make_config(), L, health=health, in_flight={"cloud-fast": 10})
    assert choice.endpoint == "cloud-fast" and choice.waiting
    assert choice.reason.startswith("fallback: local tier unhealthy")
    assert "waiting for a slot (cloud-fast 10/10 in use)" in choice.reason


def test_forced_tier_is_used_even_when_the_table_says_otherwise() -> None:
    choice = route(make_config(), "format", health={}, in_flight={}, force_tier="cloud-heavy")
    assert choice.endpoint == "cloud-heavy" and choice.reason == "forced tier cloud-heavy"
    assert choice.requested is H and not choice.fallback


def test_forced_tier_down_is_an_error_naming_the_endpoints() -> None:
    health: dict[str, HealthRecord | bool] = {"local-14b": down("local-14b"), "local-30b": False}
    with pytest.raises(EndpointUnavailable) as info:
        choose(make_config(), L, health=health, in_flight={}, forced=True)
    text = str(info.value)
    assert "local-14b down (connection refused)" in text and "local-30b down" in text
    assert "--tier" in text and "\n" not in text


def test_forced_saturated_tier_waits_even_in_fallback_mode() -> None:
    busy = {"cloud-heavy": 3}
    choice = choose(
        make_config(), H, health={}, in_flight=busy, forced=True, on_saturated="fallback"
    )
    assert choice.waiting and choice.endpoint == "cloud-heavy"
    assert choice.reason.startswith("forced tier cloud-heavy; saturated")


def test_forced_tier_without_endpoints() -> None:
    only_local = {k: v for k, v in SEED_MODELS.items() if k.startswith("local")}
    with pytest.raises(EndpointUnavailable, match="no endpoint of that tier is configured"):
        choose(make_config(only_local), F, health={}, in_flight={}, forced=True)


def test_no_models_configured_points_at_the_models_section() -> None:
    with pytest.raises(EndpointUnavailable) as info:
        choose(make_config({}), L, health={}, in_flight={})
    assert info.value.hint and "models:" in info.value.hint


def test_missing_tier_is_skipped_to_the_next() -> None:
    cloud_only = {k: v for k, v in SEED_MODELS.items() if k.startswith("cloud")}
    choice = choose(make_config(cloud_only), L, health={}, in_flight={})
    assert choice.endpoint == "cloud-fast"
    assert choice.reason == "fallback: no local endpoint configured"


def test_custom_queue_name_is_used() -> None:
    models = {"gpu": {"endpoint": "http://x/v1", "model": "m-14b", "tier": "local", "queue": "q1"}}
    assert choose(make_config(models), L, health={}, in_flight={}).queue == "q1"


def test_bad_on_saturated_value() -> None:
    with pytest.raises(PlanError):
        choose(make_config(), L, health={}, in_flight={}, on_saturated="panic")
