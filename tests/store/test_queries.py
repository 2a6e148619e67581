"""How the SQL store asks its database, where that is part of the promise: the active-job limit
is one ``count(*)`` in the transaction that inserts the job (no job rows are loaded to count,
and no other transaction can take the last place between the count and the insert)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.store.test_contract import add_job, make_event, make_job
from tunegate.domain.jobs import JobStatus
from tunegate.store import SqlStore


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
