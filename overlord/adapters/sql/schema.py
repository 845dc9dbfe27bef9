"""The state database's tables, their column types, and the schema version.

Every table lives in the one ``metadata`` below; ``create_or_upgrade`` creates whatever is
missing and records the schema version, so a later release has a place to hang
migrations (``MIGRATIONS``). Engines, connections and the once-per-process check are in
``overlord.adapters.sql.db``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Sequence,
    String,
    Table,
    Text,
    TypeDecorator,
    func,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

#: The version of the schema this code creates; bump it together with a MIGRATIONS entry.
SCHEMA_VERSION = 2
#: ``MIGRATIONS[n]`` upgrades a database from version n-1 to n (run inside the schema lock,
#: after ``create_all`` has added any new tables; a version without an entry only added tables).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                "naive datetime: pass a timezone-aware one (overlord.adapters.sql.db.utcnow())"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JsonText(TypeDecorator[Any]):
    """A JSON document stored as text (portable across SQLite and PostgreSQL)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True, default=str)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


metadata = MetaData()

#: Completion order of steps on PostgreSQL (created where sequences exist; SQLite, whose
#: writers take turns, numbers completions with ``max + 1`` instead): two steps finishing
#: at once never share a place in the order the rollback follows.
finish_order = Sequence("overlord_finish_order", metadata=metadata)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

memories = Table(
    "memories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False, index=True),
    Column("category", String(32), nullable=False, index=True),
    Column("project", String(200), nullable=True, index=True),
    Column("content", Text, nullable=False),
    Column("meta", JsonText, nullable=False, default=dict),
)

plans = Table(
    "plans",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(20), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False, index=True),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("doc", JsonText, nullable=False, default=dict),
)

steps = Table(
    "steps",
    metadata,
    Column("plan_id", String(32), ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
    Column("step_id", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("data", JsonText, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("finished_seq", Integer, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("output", Text, nullable=False, default=""),
    Column("error", Text, nullable=True),
    Column("undo", JsonText, nullable=False, default=dict),
    Column("endpoint", String(100), nullable=True),
    Column("route_reason", Text, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(32), nullable=False, index=True),
    Column("step_id", String(64), nullable=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
)

# Last health check of each model endpoint, for embedded mode (overlord.routing.dbcache).
health = Table(
    "health",
    metadata,
    Column("endpoint", String(100), primary_key=True),
    Column("healthy", Integer, nullable=False),
    Column("status", Text, nullable=False, default=""),
    Column("checked_at", UtcDateTime, nullable=False),
    Column("latency", Text, nullable=True),
)

# Expected duration of a step kind on a project: a weighted mean of its successful runs
# (overlord.durations); project "" for steps on no project. Added in version 2.
durations = Table(
    "durations",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("seconds", Float, nullable=False),
    Column("runs", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# SQLite only: full-text index of memories.content, kept in sync by triggers.
FTS_TABLE = "memories_fts"
_SQLITE_FTS_DDL = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(content, content='memories', content_rowid='id')",
    f"""CREATE TRIGGER IF NOT EXISTS memories_fts_ai AFTER INSERT ON memories BEGIN
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END""",
    f"""CREATE TRIGGER IF NOT EXISTS memories_fts_ad AFTER DELETE ON memories BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)
        VALUES ('delete', old.id, old.content); END""",
    f"""CREATE TRIGGER IF NOT EXISTS memories_fts_au AFTER UPDATE ON memories BEGIN
        INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO {FTS_TABLE}(rowid, content) VALUES (new.id, new.content); END""",
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
)


class TooNew(Exception):
    """The database was written by a newer Overlord."""


def create_or_upgrade(conn: Connection) -> bool:
    """Inside the caller's transaction: create missing tables, record or upgrade the
    version; whether memories have a SQLite FTS5 index."""
    metadata.create_all(conn, checkfirst=True)
    current = conn.execute(select(func.max(schema_version.c.version))).scalar()
    if current is None:
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_at=utcnow()))
    elif current > SCHEMA_VERSION:
        raise TooNew(
            f"schema version {current} is newer than this Overlord knows ({SCHEMA_VERSION})"
        )
    else:
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS.get(version, _additive)(conn)
            conn.execute(schema_version.insert().values(version=version, applied_at=utcnow()))
    return _sqlite_fts(conn) if conn.dialect.name == "sqlite" else False


def _additive(conn: Connection) -> None:
    """A version that only added tables: ``create_all`` already did the work."""


def _sqlite_fts(conn: Connection) -> bool:
    """Create the FTS5 index of memories when missing; False when SQLite lacks FTS5."""
    exists = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FTS_TABLE,)
    ).first()
    if exists:
        return True
    try:
        with conn.begin_nested():
            for statement in _SQLITE_FTS_DDL:
                conn.exec_driver_sql(statement)
    except DBAPIError as exc:
        if "fts5" in str(exc.orig).lower():
            return False
        raise
    return True
