"""From the text of ``overlord dispatch`` to a plan (SPEC §3).

Supported instructions (one, or several separated by ``;`` or new lines) are planned
directly. Text no form matches goes to the planning model (``overlord.translate``), when
one is configured and up; each line of its answer is parsed by the same parser and the
plan carries the translation, which only a person's approval runs. An answer with a line
the parser refuses is refused with the answer shown; with no model, the parser's refusal
says why translation was not available.
"""

from __future__ import annotations

from overlord import defaults, dispatching
from overlord.core.config import Config
from overlord.core.parser import parse_all, parse_lines
from overlord.core.plan import DispatchPlan
from overlord.core.registry import Registry
from overlord.errors import (
    NoFormMatches,
    OverlordError,
    TranslationRefused,
    TranslationUnavailable,
)


def plan_text(
    config: Config, text: str, *, tier: str | None = None, complexity: str | None = None
) -> DispatchPlan:
    """The plan for ``text``, translated by the planning model when no form matches it."""
    registry = Registry(config)
    try:
        intents = parse_all(text, registry, complexity=complexity)
    except NoFormMatches as refusal:
        return _translated(config, text, registry, refusal, tier=tier, complexity=complexity)
    return dispatching.plan_intents(config, intents, tier=tier)


def _translated(
    config: Config,
    text: str,
    registry: Registry,
    refusal: NoFormMatches,
    *,
    tier: str | None,
    complexity: str | None,
) -> DispatchPlan:
    from overlord import translate

    try:
        answer = translate.translate(config, text, tier=tier, complexity=complexity)
    except TranslationUnavailable as exc:
        why = exc.message + (f" ({exc.hint})" if exc.hint else "")
        hint = f"{refusal.hint}\ntranslation not available: {why}"
        raise NoFormMatches(refusal.message, hint) from None
    shown = "\n".join(f"  {line}" for line in answer.text.split("\n") if line.strip())
    said = (
        f"{answer.choice.endpoint} answered:\n{shown or '  (nothing)'}\n"
        "nothing was saved; say it again with the supported forms"
    )
    if not answer.lines:
        raise TranslationRefused("the model's answer holds no instruction", said)
    if len(answer.lines) > defaults.TRANSLATION_MAX_LINES:
        raise TranslationRefused(
            f"the model's answer has {len(answer.lines)} lines; at most "
            f"{defaults.TRANSLATION_MAX_LINES} are taken",
            said,
        )
    try:
        intents = parse_lines(answer.lines, registry, complexity=complexity)
        plan = dispatching.plan_intents(config, intents, tier=tier, task=" ".join(text.split()))
    except NoFormMatches as exc:
        raise TranslationRefused(
            f"the model's answer has a line no form matches: {exc.message}", said
        ) from None
    except OverlordError as exc:
        raise TranslationRefused(
            f"the model's answer cannot be planned: {exc.message}", said
        ) from None
    plan.translation = answer.translation(text)
    return plan
