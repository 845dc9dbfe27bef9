"""The state database (SPEC §1 ``state_url``): engines, the schema, and its version.

Every table lives in the one ``metadata`` below; ``ensure_schema`` creates whatever is
missing (idempotent, safe when several processes start at once) and records the schema
version, so a later release has a place to hang migrations (``MIGRATIONS``).

Use ``connect(url)`` to read and ``begin(url)`` to write; both create the schema on
first use. SQLite gets WAL, a 30 s busy timeout, foreign keys, and real transactions
(``begin`` takes the write lock up front, so writers queue instead of failing).
PostgreSQL URLs (``postgresql://``) use the psycopg 3 driver.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from overlord.errors import ConfigError

#: The version of the schema this code creates; bump it together with a MIGRATIONS entry.
SCHEMA_VERSION = 1
#: ``MIGRATIONS[n]`` upgrades a database from version n-1 to n (run inside the schema lock,
#: after ``create_all`` has added any new tables; a version without an entry only added tables).
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

#: Seconds a SQLite connection waits for a lock before giving up.
SQLITE_BUSY_TIMEOUT = 30
#: Key of the PostgreSQL advisory lock that serialises schema creation.
_PG_SCHEMA_LOCK = 0x0E7_10D


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
            raise ValueError("naive datetime: pass a timezone-aware one (overlord.db.utcnow())")
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

_engines: dict[str, Engine] = {}
_ensured: weakref.WeakSet[Engine] = weakref.WeakSet()
_fts: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_generation = [0]


# --- URLs and engines -------------------------------------------------------


def mask(url: str) -> str:
    """``url`` with its password hidden, safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def normalize(url: str) -> str:
    """Map ``postgresql://``/``postgres://`` to psycopg 3 and expand ``~`` in SQLite paths."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    if url.startswith("sqlite:///~"):
        return "sqlite:///" + str(Path(url.removeprefix("sqlite:///")).expanduser())
    return url


def _bad(url: str, problem: str, hint: str | None = None) -> ConfigError:
    return ConfigError(
        f"state_url {mask(url)}: {problem}",
        hint or "check state_url in the configuration file",
    )


def make_engine(url: str) -> Engine:
    """A new (uncached) engine for ``url``; most code wants ``engine_for``."""
    from sqlalchemy import create_engine

    try:
        parsed = make_url(normalize(url))
    except ArgumentError:
        raise _bad(url, "not a database URL", "use sqlite:///PATH or postgresql://...") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() != "sqlite":
        kwargs["pool_pre_ping"] = True  # a server may drop idle connections; a file does not
    else:
        database = parsed.database or ""
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}
        if database in ("", ":memory:"):
            from sqlalchemy.pool import StaticPool

            kwargs["poolclass"] = StaticPool
        else:
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _bad(url, f"cannot create its directory: {exc.strerror}") from None
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise _bad(
            url, f"unsupported database {parsed.drivername!r}", "use sqlite or postgresql"
        ) from None
    except ModuleNotFoundError as exc:
        raise _bad(
            url, f"needs the Python package {exc.name!r}", "pip install 'overlord[postgres]'"
        ) from None
    except ArgumentError as exc:
        raise _bad(url, str(exc).splitlines()[0]) from None
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    return engine


def _use_wal(cursor: Any) -> None:
    """Switch to WAL (persistent in the file). Changing the journal mode can answer "database
    is locked" at once, without waiting on busy_timeout, while another connection is
    mid-switch: retry briefly."""
    import sqlite3
    import time

    for attempt in range(50):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02)


def configure_sqlite(dbapi_connection: Any) -> None:
    """Settings of every SQLite connection we open (SQLAlchemy's and ``overlord.hotpath``'s)."""
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT * 1000}")
    # WAL + NORMAL: a commit survives any process crash (SIGKILL included); only a
    # power loss may drop the last commits. Saves an fsync per transaction.
    cursor.execute("PRAGMA synchronous = NORMAL")
    _use_wal(cursor)
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def engine_for(url: str) -> Engine:
    """The engine of ``url``, one per URL in this process."""
    key = normalize(url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(url)
        return engine


def generation() -> int:
    """Bumped by ``dispose``: connections opened outside the engines' pools (per thread, by
    ``overlord.hotpath``) are reopened when it changed."""
    return _generation[0]


def is_sqlite_file(url: str) -> bool:
    """A SQLite database in a file (not in memory): one every connection opens alike."""
    if not url.startswith("sqlite"):
        return False
    database = make_url(normalize(url)).database
    return database not in (None, "", ":memory:")


def dispose(url: str | None = None) -> None:
    """Close the pooled connections of ``url`` (or of every engine) and forget the engine."""
    with _lock:
        keys = [normalize(url)] if url is not None else list(_engines)
        _generation[0] += 1
        for key in keys:
            engine = _engines.pop(key, None)
            if engine is not None:
                _ensured.discard(engine)
                _fts.pop(engine, None)
                engine.dispose()


# --- connections -------------------------------------------------------------


def _open(engine: Engine, *, immediate: bool = False) -> Connection:
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        url = engine.url.render_as_string(hide_password=True)
        raise _bad(
            url,
            f"cannot connect: {reason}",
            "check state_url in the configuration file and that the database server is running",
        ) from None
    if immediate:
        conn.execution_options(sqlite_immediate=True)
    return conn


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """A connection to the state database (schema ensured) for reading."""
    engine = engine_for(url)
    ensure_schema(engine)
    with _open(engine) as conn:
        yield conn


@contextmanager
def begin(url: str) -> Iterator[Connection]:
    """A connection inside one transaction (committed on success, rolled back on error)."""
    engine = engine_for(url)
    ensure_schema(engine)
    with _open(engine, immediate=True) as conn, conn.begin():
        yield conn


# --- schema -------------------------------------------------------------------


def ensure_schema(engine: Engine) -> None:
    """Create missing tables and record/upgrade the schema version (idempotent, race-safe)."""
    if engine in _ensured:
        return
    with _open(engine, immediate=True) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
        metadata.create_all(conn, checkfirst=True)
        current = conn.execute(select(func.max(schema_version.c.version))).scalar()
        if current is None:
            conn.execute(
                schema_version.insert().values(version=SCHEMA_VERSION, applied_at=utcnow())
            )
        elif current > SCHEMA_VERSION:
            raise _bad(
                engine.url.render_as_string(hide_password=True),
                f"schema version {current} is newer than this Overlord knows ({SCHEMA_VERSION})",
                "upgrade Overlord",
            )
        else:
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS.get(version, _additive)(conn)
                conn.execute(schema_version.insert().values(version=version, applied_at=utcnow()))
        fts = _sqlite_fts(conn) if engine.dialect.name == "sqlite" else False
    _fts[engine] = fts
    _ensured.add(engine)


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


def has_fts(engine: Engine) -> bool:
    """Whether memories have a SQLite FTS5 index on ``engine`` (after ``ensure_schema``)."""
    ensure_schema(engine)
    return _fts.get(engine, False)
