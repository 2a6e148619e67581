"""Migrations build exactly the declared schema from a blank database, and are idempotent.

"Exactly" is Alembic's own comparison (``compare_metadata``, what ``alembic revision
--autogenerate`` uses): column types and nullability, indexes, constraints and server defaults
of the migrated database against ``tunegate.store.schema``, plus the collations it does not
compare. SQLite, and PostgreSQL on a fresh database (``postgres_url``, tests/conftest.py).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, MetaData, String, create_engine, inspect
from sqlalchemy.engine import Engine

from tests.store.conftest import database_url
from tunegate.store import open_store, schema
from tunegate.store.migrations.migrate import migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A blank database of each backend after ``open_store`` ran the migrations on it."""
    url = database_url(request, tmp_path, "blank.sqlite3")
    open_store(url).close()
    engine = create_engine(url)
    yield engine
    engine.dispose()


def differences(engine: Engine, metadata: MetaData) -> list[tuple[Any, ...]]:
    """Alembic's differences between the database and ``metadata``, one tuple per change
    (``("add_index", index)``, ``("modify_nullable", schema, table, column, ...)``...)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "compare_server_default": True})
        found = compare_metadata(context, metadata)
    # Column changes come grouped in a list per column.
    return [change for group in found
            for change in (group if isinstance(group, list) else [group])]


def test_blank_database_migrates_to_the_declared_schema(migrated: Engine) -> None:
    assert differences(migrated, schema.metadata) == []
    inspector = inspect(migrated)
    assert "alembic_version" in inspector.get_table_names()
    # What Alembic does not compare: collations (PostgreSQL's ids must sort byte-wise, "C").
    for table in schema.metadata.sorted_tables:
        reflected = {column["name"]: column["type"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            declared = column.type.dialect_impl(migrated.dialect)
            assert getattr(reflected[column.name], "collation", None) == getattr(
                declared, "collation", None), f"{table.name}.{column.name}"


def test_the_comparison_sees_types_nullability_and_indexes(migrated: Engine) -> None:
    """The check above is not blind: a schema one type, one nullability and one index away
    from the migrated database is told apart on each."""
    changed = MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["files"].c.filename.type = String(10)
    changed.tables["jobs"].c.suffix.nullable = False
    checkpoints = changed.tables["checkpoints"]
    checkpoints.indexes.discard(next(iter(checkpoints.indexes)))
    Index("ix_checkpoints_step", checkpoints.c.step_number)
    kinds = {change[0] for change in differences(migrated, changed)}
    assert kinds == {"modify_type", "modify_nullable", "remove_index", "add_index"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrating_twice_is_a_no_op(backend: str, tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'twice.sqlite3'}" if backend == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    open_store(url).close()
    engine = create_engine(url)
    migrate(engine)
    with engine.connect() as connection:
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    assert versions == [("0007",)]
    assert differences(engine, schema.metadata) == []
    engine.dispose()


def _open_when_released(url: str, ready: Any, go: Any, out: Any) -> None:
    ready.put("ready")
    go.wait()
    try:
        open_store(url).close()
        out.put("ok")
    except Exception as exc:  # reported to the test, which names it
        out.put(f"{type(exc).__name__}: {exc}"[:500])


def test_processes_starting_together_on_a_blank_database_migrate_it_once(
        postgres_url: str) -> None:
    """`serve` and its workers on many hosts may all start at once on a new database: each
    migrates it, one after the other (PostgreSQL creates no table twice in parallel)."""
    context = multiprocessing.get_context("spawn")
    ready, go, out = context.Queue(), context.Event(), context.Queue()
    processes = [context.Process(target=_open_when_released, args=(postgres_url, ready, go, out))
                 for _ in range(4)]
    for process in processes:
        process.start()
    for _ in processes:  # all four imported and waiting (spawn re-imports this module)
        assert ready.get(timeout=120) == "ready"
    go.set()
    results = [out.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert results == ["ok"] * 4, results
    engine = create_engine(postgres_url)
    try:
        assert differences(engine, schema.metadata) == []
    finally:
        engine.dispose()
