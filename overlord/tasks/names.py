"""Display names of task messages (Celery's ``shadow``): what Flower, worker logs and task
events show instead of the registered name, e.g. ``run-tests api · c25b87c98c/s4``.

The registered names stay ``overlord.<kind>`` (routing and the lifecycle use them); the
display name only says what runs where. Project names come from the configuration, so
they are cleaned (no control or format characters, bounded length) before display.
Pure: no Celery import.
"""

from __future__ import annotations

import unicodedata

from overlord.plan import DispatchStep

#: Longest project name shown; longer names are cut with an ellipsis.
MAX_PROJECT = 40
SEP = " · "


def clean(text: str, limit: int = MAX_PROJECT) -> str:
    """``text`` safe to print in one line: control/format characters dropped, runs of
    white space as one space, at most ``limit`` characters."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or not unicodedata.category(ch).startswith("C")
    )
    one_line = " ".join(kept.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _what(step: DispatchStep) -> str:
    project = clean(step.project) if step.project else ""
    return f"{step.kind.value} {project}".strip()


def step_name(plan_id: str, step: DispatchStep) -> str:
    """``run-tests api · c25b87c98c/s4``"""
    return f"{_what(step)}{SEP}{clean(plan_id)}/{clean(step.id)}"


def undo_name(plan_id: str, step: DispatchStep | None, step_id: str) -> str:
    """``undo merge api · c25b87c98c/s3``"""
    what = _what(step) if step is not None else ""
    return f"{f'undo {what}'.strip()}{SEP}{clean(plan_id)}/{clean(step_id)}"


def plan_task_name(label: str, plan_id: str) -> str:
    """``finish · c25b87c98c``, ``rollback · c25b87c98c`` ..."""
    return f"{label}{SEP}{clean(plan_id)}"
