"""The state database (SPEC §1 ``state_url``): URLs, engines, connections.

The tables are in ``overlord.adapters.sql.schema``; ``ensure_schema`` creates whatever is missing, once
per engine in a process (idempotent, safe when several processes start at once).

Use ``connect(url)`` to read and ``begin(url)`` to write; both create the schema on
first use. SQLite gets WAL, a 30 s busy timeout, foreign keys, and real transactions
(``begin`` takes the write lock up front, so writers queue instead of failing).
PostgreSQL URLs (``postgresql://``) use the psycopg 3 driver.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from overlord import defaults
from overlord.adapters.sql import schema
from overlord.errors import ConfigError

#: Key of the PostgreSQL advisory lock that serialises schema creation.
_PG_SCHEMA_LOCK = 0x0E7_10D


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
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": defaults.SQLITE_BUSY_TIMEOUT,
        }
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

    for attempt in range(defaults.SQLITE_WAL_ATTEMPTS):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == defaults.SQLITE_WAL_ATTEMPTS - 1:
                raise
            time.sleep(defaults.SQLITE_WAL_RETRY)


def configure_sqlite(dbapi_connection: Any) -> None:
    """Settings of every SQLite connection we open (SQLAlchemy's and ``overlord.adapters.sql.hotpath``'s)."""
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {defaults.SQLITE_BUSY_TIMEOUT * 1000}")
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
    ``overlord.adapters.sql.hotpath``) are reopened when it changed."""
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


#: One writer at a time per process on SQLite: threads racing for SQLite's write lock fall
#: into its busy handler, which sleeps (1, 2, 5, 10 ... ms) between tries; a Python lock
#: hands the turn over at once. Other processes still wait in SQLite's busy handler.
SQLITE_WRITE = threading.Lock()


@contextmanager
def write(url: str) -> Iterator[Connection]:
    """``begin`` for a write transaction, serialised within the process on SQLite."""
    if url.startswith("sqlite"):
        with SQLITE_WRITE, begin(url) as conn:
            yield conn
    else:
        with begin(url) as conn:
            yield conn


# --- schema -------------------------------------------------------------------


def ensure_schema(engine: Engine) -> None:
    """Create missing tables and record/upgrade the schema version (idempotent, race-safe)."""
    if engine in _ensured:
        return
    with _open(engine, immediate=True) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
        try:
            fts = schema.create_or_upgrade(conn)
        except schema.TooNew as exc:
            raise _bad(
                engine.url.render_as_string(hide_password=True), str(exc), "upgrade Overlord"
            ) from None
    _fts[engine] = fts
    _ensured.add(engine)


def has_fts(engine: Engine) -> bool:
    """Whether memories have a SQLite FTS5 index on ``engine`` (after ``ensure_schema``)."""
    ensure_schema(engine)
    return _fts.get(engine, False)
