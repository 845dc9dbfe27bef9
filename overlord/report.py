"""Telemetry of outcomes (``overlord report``): what ran, how long, how well, why it failed.

Everything comes from the state database (``overlord.adapters.sql.db`` plans/steps): every finished
step has its kind, queue, endpoint, start/end time, state and error; the model is the
endpoint's ``model`` in the configuration at report time.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from overlord import defaults
from overlord.adapters.sql import db, schema
from overlord.core.config import Config
from overlord.core.secrets import redact
from overlord.errors import OverlordError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
#: Step states that count in a success rate (an undone step had succeeded).
_OK = {"succeeded", "undone"}
_FINISHED = ("succeeded", "failed", "undone", "skipped", "cancelled")


def parse_since(text: str) -> timedelta:
    """``7d``, ``24h``, ``30m``, ``90s``, ``2w`` as a duration; exit 2 on anything else."""
    match = _SINCE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise OverlordError(
            f"--since {text!r}: not a duration",
            "use a number and a unit: 30m, 24h, 7d, 2w",
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class StepRecord:
    """One finished step, as telemetry sees it."""

    plan_id: str
    step_id: str
    kind: str
    project: str | None
    queue: str
    endpoint: str | None
    model: str | None
    state: str
    error: str | None
    duration: float | None
    ended_at: datetime | None


def records(config: Config, since: timedelta | None = None) -> list[StepRecord]:
    """Finished steps whose end lies within ``since`` (all when None)."""
    assert config.state_url
    query = select(schema.steps).where(schema.steps.c.state.in_(_FINISHED))
    if since is not None:
        query = query.where(schema.steps.c.ended_at >= schema.utcnow() - since)
    with db.connect(config.state_url) as conn:
        rows = conn.execute(query.order_by(schema.steps.c.ended_at)).mappings().all()
    out = []
    for row in rows:
        data = row["data"] or {}
        endpoint = row["endpoint"]
        model = config.models[endpoint].model if endpoint in config.models else None
        start, end = row["started_at"], row["ended_at"]
        out.append(
            StepRecord(
                plan_id=row["plan_id"],
                step_id=row["step_id"],
                kind=str(data.get("kind", "?")),
                project=data.get("project"),
                queue=str(data.get("queue") or defaults.DIRECT_QUEUE),
                endpoint=endpoint,
                model=model,
                state=row["state"],
                error=redact(row["error"]) if row["error"] else None,
                duration=(end - start).total_seconds() if start and end else None,
                ended_at=end,
            )
        )
    return out


def _stats(items: Iterable[StepRecord]) -> dict[str, Any]:
    items = list(items)
    counts = Counter(r.state for r in items)
    ok = sum(counts[s] for s in _OK)
    decided = ok + counts["failed"]
    durations = sorted(r.duration for r in items if r.duration is not None and r.state in _OK)
    return {
        "runs": len(items),
        "succeeded": ok,
        "failed": counts["failed"],
        "skipped": counts["skipped"] + counts["cancelled"],
        "success_rate": round(ok / decided, 4) if decided else None,
        "median_s": round(statistics.median(durations), 3) if durations else None,
        "p95_s": round(_percentile(durations, 0.95), 3) if durations else None,
        "max_s": round(durations[-1], 3) if durations else None,
    }


def _percentile(values: list[float], q: float) -> float:
    index = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return values[index]


_HEX = re.compile(r"\b[0-9a-f]{7,40}\b")
_PATH = re.compile(r"(/[\w.@+-]+){2,}")
_STEP = re.compile(r"^step s\d+ \([\w-]+\) (failed|crashed): ")


def reason_of(error: str | None) -> str:
    """A failure's reason with its incidental parts (ids, shas, paths) taken out."""
    if not error:
        return "unknown"
    line = error.strip().splitlines()[0] if error.strip() else "unknown"
    line = _STEP.sub("", line)
    line = _HEX.sub("<sha>", line)
    line = _PATH.sub("<path>", line)
    return line[:160]


def summary(config: Config, since: timedelta | None = None) -> dict[str, Any]:
    """The whole report: plans by state, per kind, per endpoint, failures by reason."""
    recs = records(config, since)
    by_kind: dict[str, list[StepRecord]] = defaultdict(list)
    by_endpoint: dict[str, list[StepRecord]] = defaultdict(list)
    for r in recs:
        by_kind[r.kind].append(r)
        by_endpoint[r.endpoint or r.queue].append(r)
    failures: dict[tuple[str, str], list[StepRecord]] = defaultdict(list)
    for r in recs:
        if r.state == "failed":
            failures[(r.kind, reason_of(r.error))].append(r)
    return {
        "since": (schema.utcnow() - since).isoformat() if since else None,
        "plans": _plan_states(config, since),
        "steps": _stats(recs),
        "by_kind": [{"kind": k, **_stats(v)} for k, v in sorted(by_kind.items())],
        "by_endpoint": [
            {
                "endpoint": name,
                "queue": items[0].queue,
                "model": items[0].model,
                **_stats(items),
            }
            for name, items in sorted(by_endpoint.items())
        ],
        "failures": [
            {
                "kind": kind,
                "reason": reason,
                "count": len(items),
                "last_plan": items[-1].plan_id,
                "projects": sorted({r.project for r in items if r.project}),
            }
            for (kind, reason), items in sorted(failures.items(), key=lambda kv: -len(kv[1]))
        ],
    }


def _plan_states(config: Config, since: timedelta | None) -> dict[str, int]:
    assert config.state_url
    query = select(schema.plans.c.state)
    if since is not None:
        query = query.where(schema.plans.c.created_at >= schema.utcnow() - since)
    with db.connect(config.state_url) as conn:
        states = Counter(conn.execute(query).scalars().all())
    return dict(sorted(states.items()))


def prometheus(report: dict[str, Any]) -> str:
    """The report in Prometheus' text exposition format."""
    lines = [
        "# HELP overlord_steps_total Finished steps by kind and outcome.",
        "# TYPE overlord_steps_total gauge",
    ]
    for row in report["by_kind"]:
        for outcome in ("succeeded", "failed", "skipped"):
            lines.append(
                f'overlord_steps_total{{kind="{row["kind"]}",outcome="{outcome}"}} {row[outcome]}'
            )
    lines += [
        "# HELP overlord_endpoint_steps_total Finished steps by endpoint and outcome.",
        "# TYPE overlord_endpoint_steps_total gauge",
    ]
    for row in report["by_endpoint"]:
        for outcome in ("succeeded", "failed"):
            lines.append(
                f'overlord_endpoint_steps_total{{endpoint="{row["endpoint"]}",'
                f'outcome="{outcome}"}} {row[outcome]}'
            )
    lines += [
        "# HELP overlord_step_duration_median_seconds Median duration of successful steps.",
        "# TYPE overlord_step_duration_median_seconds gauge",
    ]
    for row in report["by_kind"]:
        if row["median_s"] is not None:
            lines.append(
                f'overlord_step_duration_median_seconds{{kind="{row["kind"]}"}} {row["median_s"]}'
            )
    lines += ["# TYPE overlord_plans gauge"]
    for state, count in report["plans"].items():
        lines.append(f'overlord_plans{{state="{state}"}} {count}')
    return "\n".join(lines) + "\n"
