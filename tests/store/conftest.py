"""The store contract suite runs against every backend: SQLite always, PostgreSQL when
``TUNEGATE_TEST_POSTGRES_URL`` names a database the suite may fill (it is skipped otherwise)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunegate.store import SqlStore, open_store

POSTGRES_URL = os.environ.get("TUNEGATE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    elif POSTGRES_URL:
        opened = open_store(POSTGRES_URL)
        _empty(opened)
    else:
        pytest.skip("set TUNEGATE_TEST_POSTGRES_URL to run the contract against PostgreSQL")
    yield opened
    opened.close()


def _empty(store: SqlStore) -> None:
    from tunegate.store import schema

    with store.engine.begin() as connection:
        for table in reversed(schema.metadata.sorted_tables):
            connection.execute(table.delete())
