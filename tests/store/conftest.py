"""The store contract suite runs against every backend: SQLite, and PostgreSQL on a fresh
database of the session's server (``postgres_url``, tests/conftest.py: a throwaway server, or
the one ``TUNEGATE_TEST_POSTGRES_URL`` names; skipped, saying how to get one, without either)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tunegate.store import SqlStore, open_store


def database_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """A blank database of the backend ``request.param`` names. PostgreSQL's is asked for only
    here, so that SQLite's variants never start a server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(database_url(request, tmp_path, "store.sqlite3"))
    yield opened
    opened.close()
