"""The store's figures for ``GET /metrics`` on SQLite and PostgreSQL: jobs by status and method
type (read from the JSON ``method`` column), and the queue's depth and oldest job."""

from __future__ import annotations

from tests.store.test_contract import add_job
from tunegate.domain.jobs import JobStatus
from tunegate.store import SqlStore


def test_jobs_by_status_and_method_and_the_queue(store: SqlStore) -> None:
    assert store.job_counts() == {} and store.queue_figures() == (0, None)
    first, second, third = add_job(store), add_job(store), add_job(store)
    store.transition(first.id, JobStatus.QUEUED, events=[])
    store.transition(third.id, JobStatus.CANCELLED, events=[])
    assert store.job_counts() == {("queued", "supervised"): 1,
                                  ("validating_files", "supervised"): 1,
                                  ("cancelled", "supervised"): 1}
    depth, oldest = store.queue_figures()
    assert depth == 2 and oldest == min(first.created_at, second.created_at)
