"""Display names of task messages (Celery's ``shadow``): what Flower, worker logs and task
events show instead of the registered name, e.g. ``run-tests api · c25b87c98c/s4``.

The registered names stay ``overlord.<kind>`` (``step_task_name``; routing and the
lifecycle use them); the display name only says what runs where. Project names come from
the configuration, so they are cleaned (no control or format characters, bounded length)
before display.
Pure: no Celery import.
"""

from __future__ import annotations

from overlord.core.config import ActionKind
from overlord.core.plan import DispatchStep
from overlord.core.terminal import one_line

SEP = " · "


def step_task_name(kind: ActionKind) -> str:
    """The registered name of the task that runs steps of ``kind``: ``overlord.<kind>``."""
    return f"overlord.{kind.value}"


def _what(step: DispatchStep) -> str:
    project = one_line(step.project) if step.project else ""
    return f"{step.kind.value} {project}".strip()


def step_name(plan_id: str, step: DispatchStep) -> str:
    """``run-tests api · c25b87c98c/s4``"""
    return f"{_what(step)}{SEP}{one_line(plan_id)}/{one_line(step.id)}"


def undo_name(plan_id: str, step: DispatchStep | None, step_id: str) -> str:
    """``undo merge api · c25b87c98c/s3``"""
    what = _what(step) if step is not None else ""
    return f"{f'undo {what}'.strip()}{SEP}{one_line(plan_id)}/{one_line(step_id)}"


def plan_task_name(label: str, plan_id: str) -> str:
    """``finish · c25b87c98c``, ``rollback · c25b87c98c`` ..."""
    return f"{label}{SEP}{one_line(plan_id)}"
