"""SQLite's locks: writes serialize on BEGIN IMMEDIATE; reads take no lock and never wait."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from tests.store.test_contract import PROJECT, add_job, make_file
from tunegate.store import engine
from tunegate.store.sql import open_store


@pytest.fixture
def busy_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A read or write that waited for the lock would fail after 0.2 s instead of 30 s.
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 200)
    return tmp_path / "store.sqlite3"


def test_reads_see_the_last_commit_while_another_process_holds_the_write_lock(
        busy_path: Path) -> None:
    store = open_store(f"sqlite:///{busy_path}")
    job = add_job(store)
    stored = make_file()
    store.add_file(stored)
    writer = sqlite3.connect(busy_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a worker in the middle of a transaction
        writer.execute("UPDATE jobs SET seed = 99")
        assert store.get_job(job.id) == job
        assert store.list_jobs(PROJECT, after=None, limit=5, metadata=None).items == [job]
        assert store.get_file(PROJECT, stored.id) == stored
        assert store.list_files(PROJECT, purpose=None, after=None, limit=5, ascending=False,
                                at=0).items == [stored]
        assert store.expired_files(now=0) == []
        assert store.list_events(job.id, after=None, limit=5).items
        assert store.list_checkpoints(job.id, after=None, limit=5).items == []
        assert store.list_models(PROJECT) == []
        assert store.get_model(PROJECT, "ft:none") is None
        assert store.list_permissions("ft:none", project_id=None, after=None, limit=5,
                                      ascending=True).items == []
        assert store.get_upload(PROJECT, "upload-none") is None
        writer.execute("COMMIT")
        got = store.get_job(job.id)
        assert got is not None and got.seed == 99
    finally:
        writer.close()
        store.close()


def test_writes_still_wait_for_the_write_lock(busy_path: Path) -> None:
    store = open_store(f"sqlite:///{busy_path}")
    writer = sqlite3.connect(busy_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            store.add_file(make_file())
        writer.execute("ROLLBACK")
        store.add_file(make_file())
    finally:
        writer.close()
        store.close()
