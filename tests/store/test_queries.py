"""How the SQL store asks its database, where that is part of the promise: the active-job limit
is one ``count(*)`` in the transaction that inserts the job (no job rows are loaded to count,
and no other transaction can take the last place between the count and the insert)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event, select

from tests.store.test_contract import add_job, make_event, make_job
from tunegate.domain.jobs import JobStatus
from tunegate.store import SqlStore, open_store, schema
from tunegate.store.engine import POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT


def test_the_active_job_limit_is_one_count_in_the_inserting_transaction(store: SqlStore) -> None:
    for status in (JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.RUNNING):
        add_job(store, status=status)
    seen: list[str] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(" ".join(sql.split()))

    def commit(conn: Any) -> None:
        seen.append("COMMIT")

    event.listen(store.engine, "before_cursor_execute", statement)
    event.listen(store.engine, "commit", commit)
    try:
        job = make_job()
        store.create_job(job, make_event(job.id), max_active=3)
    finally:
        event.remove(store.engine, "before_cursor_execute", statement)
        event.remove(store.engine, "commit", commit)
    reads = [sql for sql in seen if sql.startswith("SELECT") and "FROM jobs" in sql]
    assert len(reads) == 1, seen
    [count] = reads
    assert count.startswith("SELECT count(*)"), count
    assert "WHERE jobs.project_id = " in count and "jobs.status IN (" in count, count
    after = [sql.split(" (")[0] for sql in seen[seen.index(count) + 1:]]
    assert after == ["INSERT INTO jobs", "INSERT INTO job_events", "COMMIT"], seen
    assert seen.count("COMMIT") == 1, seen


# PostgreSQL only: what SQLite's BEGIN IMMEDIATE gives for free, PostgreSQL gets from locks.


@pytest.fixture
def postgres_store(migrated_postgres_url: str) -> Iterator[SqlStore]:
    opened = open_store(migrated_postgres_url)
    yield opened
    opened.close()


def test_a_claim_skips_the_job_another_worker_is_claiming(postgres_store: SqlStore) -> None:
    """FOR UPDATE SKIP LOCKED: while one worker's claim holds the oldest job's row, another
    worker takes the next job at once instead of waiting for it (or taking it too)."""
    older, newer = add_job(postgres_store), add_job(postgres_store)
    with (ThreadPoolExecutor(1) as pool, postgres_store.engine.connect() as other_worker,
          other_worker.begin()):
        other_worker.execute(select(schema.jobs.c.id).where(schema.jobs.c.id == older.id)
                             .with_for_update())
        # In a thread: a claim that waited for the lock fails here instead of hanging.
        claimed = pool.submit(postgres_store.claim_job, [JobStatus.VALIDATING_FILES], "w2",
                              time.time()).result(timeout=20)
    assert claimed is not None and claimed.id == newer.id
    again = postgres_store.claim_job([JobStatus.VALIDATING_FILES], "w3", time.time())
    assert again is not None and again.id == older.id


def test_a_session_idle_inside_a_transaction_is_ended(postgres_store: SqlStore) -> None:
    """A worker's host that died mid-transaction must not hold its locks (the job row the
    heartbeat takeover needs) until TCP notices: every tunegate connection sets a timeout."""
    with postgres_store.engine.connect() as connection:
        shown = connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar()
    assert shown == POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT
