"""How the plan store keeps a plan: which fields go to the plan's JSON document, the
step's data document and the step's own columns; rows back into models; and a document
update as stored (JSON values, texts redacted of secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from overlord.plan import DispatchStep
from overlord.secrets import redact

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
