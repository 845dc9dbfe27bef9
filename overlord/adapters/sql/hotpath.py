"""The per-step state writes on SQLite, run on the DB-API connection directly.

Every step writes twice (its claim, its outcome). Through SQLAlchemy's ``Connection`` each
statement costs ~0.1 ms of Python (events, cache keys, result set-up) around ~0.02 ms of
SQLite; with a plan's steps running in worker threads that all share one GIL, that Python
time is what a plan waits on (``bench/dispatch_overhead.py``). Here the same Core
statements are compiled once for SQLite, with their columns' own bind and result
processors, and run on one ``sqlite3`` connection per thread: the rows written and read
are exactly those SQLAlchemy writes and reads. PostgreSQL keeps the SQLAlchemy path.

``step_write`` and ``read`` choose the path: direct on a SQLite file, SQLAlchemy otherwise,
with the same interface (statements in, rows as dicts out). Writers take turns on
``db.SQLITE_WRITE`` either way.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from overlord import defaults
from overlord.adapters.sql import db

_DIALECT = sqlite.dialect(paramstyle="named")
_local = threading.local()
_compiled: dict[tuple[Executable, frozenset[str]], _Compiled] = {}


class _Compiled:
    """A statement compiled for SQLite for the given parameter keys, with its processors."""

    def __init__(self, statement: Executable, keys: frozenset[str]) -> None:
        # the keys that name columns become an UPDATE's SET clause, as in SQLAlchemy
        compiled = statement.compile(dialect=_DIALECT, column_keys=sorted(keys))  # type: ignore[attr-defined]
        self.sql = str(compiled)
        self.compiled = compiled
        self.binds: dict[str, Callable[[Any], Any] | None] = {
            name: bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            for name, bind in compiled.binds.items()
        }
        columns = getattr(statement, "selected_columns", None)
        if columns is None:
            columns = getattr(statement, "_returning", ()) or ()
        self.columns = [c.key for c in columns]
        self.results = [
            c.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None) for c in columns
        ]

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = self.compiled.construct_params(dict(values))
        for name, process in self.binds.items():
            if process is not None and name in out:
                out[name] = process(out[name])
        return out

    def rows(self, cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
        return [
            {
                key: process(value) if process is not None else value
                for key, process, value in zip(self.columns, self.results, raw, strict=True)
            }
            for raw in cursor.fetchall()
        ]


def _prepare(statement: Executable, keys: frozenset[str]) -> _Compiled:
    key = (statement, keys)  # statements are module constants: a handful of entries
    found = _compiled.get(key)
    if found is None:
        found = _compiled[key] = _Compiled(statement, keys)
    return found


class Writer:
    """Runs statements inside one write transaction (see ``_direct_write``)."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, statement: Executable, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run ``statement`` with ``values`` (as ``Connection.execute`` would); its rows."""
        prepared = _prepare(statement, frozenset(values))
        self._cursor.execute(prepared.sql, prepared.params(values))
        return prepared.rows(self._cursor) if prepared.columns else []


def _connection(url: str) -> sqlite3.Connection:
    """This thread's connection to the SQLite database at ``url`` (schema ensured)."""
    connections: dict[str, tuple[int, sqlite3.Connection]] | None
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    generation, conn = connections.pop(url, (-1, None))
    if conn is None or generation != db.generation():
        if conn is not None:
            conn.close()
        engine = db.engine_for(url)
        db.ensure_schema(engine)
        conn = sqlite3.connect(
            engine.url.database or "", timeout=defaults.SQLITE_BUSY_TIMEOUT, check_same_thread=False
        )
        db.configure_sqlite(conn)
        generation = db.generation()
    connections[url] = (generation, conn)  # most recently used last
    while len(connections) > defaults.SQLITE_CONNECTIONS_KEPT:
        connections.pop(next(iter(connections)))[1].close()
    return conn


def _forget_after_fork() -> None:
    """A forked child (a prefork pool process) opens its own connections: SQLite's must
    not cross a fork. The parent's are dropped, not closed (the parent still uses them)."""
    _local.connections = {}


os.register_at_fork(after_in_child=_forget_after_fork)


@contextmanager
def _direct_write(url: str) -> Iterator[Writer]:
    """One write transaction on the SQLite database at ``url``: committed when the block
    ends, rolled back when it raises."""
    with db.SQLITE_WRITE:
        conn = _connection(url)
        cursor = conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield Writer(cursor)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


class _Rows:
    """``Writer``'s interface on a SQLAlchemy connection (PostgreSQL, SQLite in memory)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, statement: Executable, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        result = self._conn.execute(statement, dict(values))
        return [dict(row) for row in result.mappings()] if result.returns_rows else []


@functools.lru_cache(maxsize=64)
def direct(url: str) -> bool:
    """Whether statements on ``url`` take the direct path (a SQLite file)."""
    return db.is_sqlite_file(url)


@contextmanager
def step_write(url: str) -> Iterator[Writer | _Rows]:
    """One write transaction of the per-step path (claim, finish): committed when the
    block ends, rolled back when it raises."""
    if direct(url):
        with _direct_write(url) as writer:
            yield writer
    else:
        with db.write(url) as conn:
            yield _Rows(conn)


def read(url: str, statement: Executable, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of one read statement (on SQLite, no lock: WAL readers never wait)."""
    if not direct(url):
        with db.connect(url) as conn:
            return _Rows(conn).execute(statement, values)
    prepared = _prepare(statement, frozenset(values))
    cursor = _connection(url).execute(prepared.sql, prepared.params(values))
    return prepared.rows(cursor)
