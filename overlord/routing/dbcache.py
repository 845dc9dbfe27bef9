"""A ``HealthCache`` kept in the state database (embedded mode: no Redis outlives a command).

One row per endpoint in the ``health`` table; ``put`` replaces the row. Works on SQLite and
PostgreSQL alike (delete + insert in one transaction).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from overlord.adapters.sql import db, schema
from overlord.routing.health import HealthRecord


class DbHealthCache:
    """Health records in the state database at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, name: str) -> HealthRecord | None:
        with db.connect(self.url) as conn:
            row = (
                conn.execute(select(schema.health).where(schema.health.c.endpoint == name))
                .mappings()
                .first()
            )
        return None if row is None else _record(row)

    def put(self, record: HealthRecord) -> None:
        latency = None if record.latency is None else repr(float(record.latency))
        with db.begin(self.url) as conn:
            conn.execute(delete(schema.health).where(schema.health.c.endpoint == record.endpoint))
            conn.execute(
                schema.health.insert().values(
                    endpoint=record.endpoint,
                    healthy=1 if record.healthy else 0,
                    status=record.status,
                    checked_at=record.checked_at,
                    latency=latency,
                )
            )

    def all(self) -> dict[str, HealthRecord]:
        with db.connect(self.url) as conn:
            rows = conn.execute(select(schema.health)).mappings().all()
        return {r["endpoint"]: _record(r) for r in rows}


def _record(row: Any) -> HealthRecord:
    latency = row["latency"]
    return HealthRecord(
        endpoint=str(row["endpoint"]),
        healthy=bool(row["healthy"]),
        status=str(row["status"] or ""),
        checked_at=row["checked_at"],
        latency=None if latency is None else float(latency),
    )
