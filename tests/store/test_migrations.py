"""Migrations build the schema from a blank database and are idempotent."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from tunegate.store import open_store, schema
from tunegate.store.migrations.migrate import migrate


def test_blank_database_migrates_to_the_declared_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'blank.sqlite3'}"
    open_store(url).close()
    engine = create_engine(url)
    inspector = inspect(engine)
    for table in schema.metadata.sorted_tables:
        migrated = {column["name"] for column in inspector.get_columns(table.name)}
        assert migrated == {column.name for column in table.columns}, table.name
    assert "alembic_version" in inspector.get_table_names()
    engine.dispose()


def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.sqlite3'}"
    open_store(url).close()
    engine = create_engine(url)
    migrate(engine)
    with engine.connect() as connection:
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    assert versions == [("0001",)]
    engine.dispose()
