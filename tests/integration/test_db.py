"""The state database: engines, schema creation (also concurrent), timestamps, errors."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from overlord.adapters.sql import db, schema
from overlord.errors import ConfigError

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()
needs_pg = pytest.mark.skipif(not PG_AVAILABLE, reason="no PostgreSQL at 127.0.0.1:5432")


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (a ``postgresql://`` URL), dropped afterwards."""
    name = f"overlord_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        db.dispose(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def sqlite_database(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'state' / 'overlord.db'}"
    try:
        yield url
    finally:
        db.dispose(url)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[needs_pg, pytest.mark.postgres])]
)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A state_url of an empty database, once per backend."""
    manager = pg_database() if request.param == "postgresql" else sqlite_database(tmp_path)
    with manager as url:
        yield url


def test_sqlite_engine_creates_directory_and_uses_wal(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        with db.connect(url) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert (tmp_path / "state" / "overlord.db").is_file()


def test_engine_is_cached_per_url(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        assert db.engine_for(url) is db.engine_for(url)


def test_postgresql_url_uses_psycopg3() -> None:
    assert db.normalize("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"


def test_schema_created_with_version(state_url: str) -> None:
    engine = db.engine_for(state_url)
    db.ensure_schema(engine)
    db.ensure_schema(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"memories", "schema_version"} <= tables
    with db.connect(state_url) as conn:
        versions = conn.execute(select(schema.schema_version.c.version)).scalars().all()
    assert versions == [schema.SCHEMA_VERSION]


def test_ensure_schema_from_fresh_engines_is_idempotent(state_url: str) -> None:
    for _ in range(3):
        engine = db.make_engine(state_url)
        db.ensure_schema(engine)
        engine.dispose()
    with db.connect(state_url) as conn:
        assert conn.execute(select(func.count()).select_from(schema.schema_version)).scalar() == 1


def test_concurrent_ensure_schema_from_two_threads(state_url: str) -> None:
    engines = [db.make_engine(state_url) for _ in range(2)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def create(engine: object) -> None:
        try:
            barrier.wait(timeout=10)
            db.ensure_schema(engine)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.dispose()
    assert errors == []
    with db.connect(state_url) as conn:
        assert conn.execute(select(func.count()).select_from(schema.schema_version)).scalar() == 1


def test_timestamps_are_utc_aware(state_url: str) -> None:
    local = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    with db.begin(state_url) as conn:
        conn.execute(
            schema.memories.insert().values(created_at=local, category="decision", content="x")
        )
    with db.connect(state_url) as conn:
        stored = conn.execute(select(schema.memories.c.created_at)).scalar_one()
    assert stored == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert stored.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url, pytest.raises(Exception, match="naive"):
        with db.begin(url) as conn:
            conn.execute(
                schema.memories.insert().values(
                    created_at=datetime(2024, 1, 1), category="x", content="x"
                )
            )


def test_begin_rolls_back_on_error(state_url: str) -> None:
    with pytest.raises(RuntimeError), db.begin(state_url) as conn:
        conn.execute(
            schema.memories.insert().values(created_at=schema.utcnow(), category="x", content="x")
        )
        raise RuntimeError("boom")
    with db.connect(state_url) as conn:
        assert conn.execute(select(func.count()).select_from(schema.memories)).scalar() == 0


def test_sqlite_writers_from_threads_do_not_fail(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        errors: list[BaseException] = []

        def write(n: int) -> None:
            try:
                for i in range(10):
                    with db.begin(url) as conn:
                        count = conn.execute(
                            select(func.count()).select_from(schema.memories)
                        ).scalar()
                        conn.execute(
                            schema.memories.insert().values(
                                created_at=schema.utcnow(),
                                category="update",
                                content=f"{n}-{i}-{count}",
                            )
                        )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        with db.connect(url) as conn:
            assert conn.execute(select(func.count()).select_from(schema.memories)).scalar() == 40


def test_unreachable_server_is_a_one_line_config_error_with_masked_password() -> None:
    url = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    try:
        with pytest.raises(ConfigError) as info, db.connect(url):
            pass
    finally:
        db.dispose(url)
    message = str(info.value)
    assert "s3cret" not in message
    assert "127.0.0.1:1/nowhere" in message
    assert "cannot connect" in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize("url", ["garbage", "nosuchdb://a:pw@h/d"])
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        db.engine_for(url)
    assert "pw" not in str(info.value)
    assert info.value.message.startswith("state_url ")


def test_mask_hides_password() -> None:
    assert db.mask("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert "pw" not in db.mask("not a url://u:pw@h")


def test_sqlite_fts_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    with sqlite_database(tmp_path) as url:
        assert db.has_fts(db.engine_for(url))
        with db.begin(url) as conn:
            conn.execute(
                schema.memories.insert().values(
                    created_at=schema.utcnow(), category="x", content="alpha"
                )
            )
            conn.execute(schema.memories.update().values(content="beta"))
        match = text(f"SELECT rowid FROM {schema.FTS_TABLE} WHERE {schema.FTS_TABLE} MATCH :q")
        with db.connect(url) as conn:
            assert conn.execute(match, {"q": "alpha"}).all() == []
            assert len(conn.execute(match, {"q": "beta"}).all()) == 1
        with db.begin(url) as conn:
            conn.execute(schema.memories.delete())
        with db.connect(url) as conn:
            assert conn.execute(match, {"q": "beta"}).all() == []
