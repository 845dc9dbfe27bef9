"""The task parser (SPEC §3): a short instruction in, an ``Intent`` out.

The forms are the action kinds' (``overlord.kinds``: each kind module declares its own,
in ``Kind.order``) plus the release's. The normalised text is matched against each form
in turn and the first match builds the ``Intent``; text that matches none is refused
with the closest form.
"""

from __future__ import annotations

import difflib
import re

from overlord.core.intent import (
    LIST_HELP,
    VERSION,
    WORD,
    Builder,
    FormContext,
    Intent,
    IntentKind,
    versioned,
)
from overlord.core.registry import Registry
from overlord.errors import NoFormMatches, OverlordError, ParseError
from overlord.kinds import registry as kind_registry
from overlord.routing.tiers import Complexity, TaskType

__all__ = [
    "LIST_HELP",
    "SUPPORTED_FORMS",
    "Complexity",
    "Intent",
    "IntentKind",
    "TaskType",
    "closest_form",
    "normalize",
    "parse",
    "parse_all",
    "parse_lines",
    "split_instructions",
]

#: Forms of plans made of several kinds (``overlord.core.release``), placed among the kinds'
#: forms by order like a kind's: (order, regular expression, builder, help).
_PLAN_FORMS: list[tuple[int, str, Builder, tuple[str, ...]]] = [
    (
        30,
        rf"release (?P<project>{WORD}) (?:version |as )?{VERSION}",
        versioned(IntentKind.RELEASE),
        ("release P VERSION",),
    ),
]


def _table() -> tuple[list[tuple[re.Pattern[str], Builder]], list[str]]:
    """Every form in order (each kind's, by ``Kind.order``; the plan forms among them),
    compiled, and the help texts in the same order."""
    rows = [(order, pattern, build, shown) for order, pattern, build, shown in _PLAN_FORMS]
    rows += [
        (kind.order, form.pattern, form.build, kind.help if n == 0 else ())
        for kind in kind_registry.by_order()
        for n, form in enumerate(kind.forms)
    ]
    rows.sort(key=lambda row: row[0])  # stable: a kind's forms keep their order
    table = [(re.compile(pattern, re.I), build) for _, pattern, build, _ in rows]
    return table, [text for *_, shown in rows for text in shown]


#: ``SUPPORTED_FORMS``: the forms as people read them, for help text and "closest form"
#: suggestions.
_TABLE, SUPPORTED_FORMS = _table()


# --- entry point -------------------------------------------------------------


def normalize(text: str) -> str:
    """Collapse whitespace, drop a leading "please" and a trailing period."""
    text = re.sub(r"[ .]+$", "", " ".join(text.split()))
    return re.sub(r"^please(?:[ ,.]+|$)", "", text, flags=re.I)


def _form_key(form: str) -> str:
    """The literal leading words of a form ("fix lint in LIST" → "fix lint")."""
    words: list[str] = []
    for word in form.split():
        if not word.islower() or "[" in word or "|" in word:
            break
        words.append(word)
    while words and words[-1] in ("in", "to", "for", "across"):
        words.pop()
    return " ".join(words)


def closest_form(text: str) -> str:
    """The supported form whose leading words are closest to the text's."""
    words = normalize(text).lower().split()

    def score(form: str) -> tuple[float, int]:
        key = _form_key(form)
        n = len(key.split())
        ratio = difflib.SequenceMatcher(None, key, " ".join(words[:n])).ratio()
        return ratio, n

    return max(SUPPORTED_FORMS, key=score)


def _forms_hint() -> str:
    return f"supported forms: {'; '.join(SUPPORTED_FORMS)} ({LIST_HELP})"


def parse(text: str, registry: Registry, complexity: Complexity | str | None = None) -> Intent:
    """Turn an instruction into an ``Intent``.

    Raises ``ParseError`` (no form matches, or a form's parts do not fit),
    ``ProjectLookupError`` (unknown or ambiguous project) or ``VersionError``.
    ``complexity`` overrides the complexity of code work.
    """
    if complexity is not None and str(complexity).lower() not in list(Complexity):
        raise ParseError(f"unknown complexity {complexity!r}", "use low, medium or high")
    override = Complexity(str(complexity).lower()) if complexity is not None else None
    normal = normalize(text)
    if not normal:
        raise ParseError("empty task: say what to do", _forms_hint())
    ctx = FormContext(registry=registry, text=text.strip(), complexity=override)
    for pattern, build in _TABLE:
        match = pattern.fullmatch(normal)
        if match:
            return build(match, ctx)
    shown = normal if len(normal) <= 80 else normal[:77] + "..."
    raise NoFormMatches(
        f'cannot understand "{shown}"; closest form: "{closest_form(normal)}"', _forms_hint()
    )


def split_instructions(text: str) -> list[str]:
    """The instructions of a text: pieces separated by ``;`` or new lines (blank ones dropped)."""
    return [piece.strip() for piece in re.split(r"[;\n\r]+", text) if piece.strip()]


def parse_lines(
    lines: list[str], registry: Registry, complexity: Complexity | str | None = None
) -> list[Intent]:
    """Each line parsed on its own; the first refusal names its line when there are several."""
    intents: list[Intent] = []
    for number, line in enumerate(lines, 1):
        try:
            intents.append(parse(line, registry, complexity))
        except OverlordError as exc:
            if len(lines) > 1:
                exc.message = f"line {number} ({line!r}): {exc.message}"
                exc.args = (exc.message,)
            raise
    if not intents:
        raise ParseError("empty task: say what to do", _forms_hint())
    return intents


def parse_all(
    text: str, registry: Registry, complexity: Complexity | str | None = None
) -> list[Intent]:
    """Every instruction of ``text`` (see ``split_instructions``) as an ``Intent``.

    One text with several supported instructions makes several intents (one plan, see
    ``planner.plan_for_all``). Raises like ``parse``; ``NoFormMatches`` when any piece
    matches no form, so the whole text can go to translation.
    """
    return parse_lines(split_instructions(text), registry, complexity)
