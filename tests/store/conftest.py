"""The store contract suite runs against every backend: SQLite, and PostgreSQL on a fresh
database of the session's server (``migrated_postgres_url``, tests/conftest.py: a throwaway
server, or the one ``TUNEGATE_TEST_POSTGRES_URL`` names; skipped, saying how to get one, without
either). Each test's database starts as a copy of one migrated once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import copy_migrated
from tunegate.store import SqlStore, open_store


def database_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """A blank database of the backend ``request.param`` names. PostgreSQL's is asked for only
    here, so that SQLite's variants never start a server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    return str(request.getfixturevalue("postgres_url"))


def migrated_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """``database_url``'s database at the newest schema already: a copy of the session's
    migrated one (tests/conftest.py), which saves every contract test a migration. Migrating
    a blank database is test_migrations.py's to test."""
    if request.param == "sqlite":
        return copy_migrated(request.getfixturevalue("migrated_sqlite"), tmp_path / name)
    return str(request.getfixturevalue("migrated_postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(migrated_url(request, tmp_path, "store.sqlite3"))
    yield opened
    opened.close()
