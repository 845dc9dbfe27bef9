"""How the plan store keeps a plan: which fields go to the plan's JSON document, the
step's data document and the step's own columns; rows back into models; and a document
update as stored (JSON values, texts redacted of secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from overlord import defaults
from overlord.core.plan import DispatchStep, StepState
from overlord.core.secrets import redact
from overlord.errors import PlanNotFound

PLAN_DOC = (
    "scope",
    "requires_approval",
    "approval_reason",
    "scheduled_run",
    "push_approved",
    "translation",
    "person_approved",
    "original_branches",
    "error",
    "undone",
    "notes",
    "owner",
    "options",
)
STEP_DATA = (
    "kind",
    "project",
    "description",
    "params",
    "depends_on",
    "tier",
    "queue",
    "timeout",
    "estimate",
    "estimate_source",
)
STEP_COLUMNS = (
    "state",
    "attempts",
    "started_at",
    "ended_at",
    "finished_seq",
    "worker",
    "output",
    "error",
    "undo",
    "endpoint",
    "route_reason",
)


def step_from_row(row: Any) -> DispatchStep:
    return DispatchStep.model_validate(
        {"id": row["step_id"], **row["data"], **{k: row[k] for k in STEP_COLUMNS}}
    )


def listed(row: Any) -> dict[str, Any]:
    """A plan row as ``list_plans`` shows it (times as ISO texts)."""
    return {
        "id": row["id"],
        "task": row["task"],
        "kind": row["kind"],
        "state": row["state"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat() if row["updated_at"] else None,
    }


def one_id(plan_id: str, ids: list[str]) -> str:
    """The one id of ``ids`` (the ids ``plan_id`` is a prefix of, up to 3); else
    ``PlanNotFound`` saying there is none, or listing the candidates."""
    if len(ids) == 1 and plan_id:
        return ids[0]
    if not ids or not plan_id:
        raise PlanNotFound(f"no plan with id {plan_id!r}", "list plans with `overlord plans`")
    raise PlanNotFound(f"plan id {plan_id!r} is ambiguous: {', '.join(ids)}", "type more of the id")


def finished(
    state: StepState, at: datetime, output: str, error: str | None, undo: dict[str, Any] | None
) -> dict[str, Any]:
    """The columns of a step that ended (output tail and error redacted), and the message
    of its ``step`` event under ``"message"``."""
    values: dict[str, Any] = {
        "state": state.value,
        "ended_at": at,
        "output": redact(output)[-defaults.OUTPUT_TAIL :],
        "error": redact(error) if error else error,
    }
    if undo:
        values["undo"] = jsonable(undo)
    detail = f"-> {state.value}" + (f": {values['error']}" if error else "")
    return {**values, "message": detail}


def merged_doc(current: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``doc``'s keys set; ``add_notes`` is appended to the notes."""
    added = doc.pop("add_notes", None) or []
    out = {**current, **stored_doc(doc)}
    if added:
        out["notes"] = [*out.get("notes", []), *stored_doc({"notes": list(added)})["notes"]]
    return out


def stored_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A plan document update as stored: JSON values, its texts redacted of secrets."""
    out = jsonable(doc)
    if isinstance(out.get("error"), str):
        out["error"] = redact(out["error"])
    if isinstance(out.get("notes"), list):
        out["notes"] = [redact(n) if isinstance(n, str) else n for n in out["notes"]]
    return dict(out)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value
