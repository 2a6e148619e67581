"""The store's figures for ``GET /metrics`` on SQLite and PostgreSQL: jobs by status and method
type (read from the JSON ``method`` column), and the queue's depth and oldest job."""

from __future__ import annotations

from tests.store.test_contract import add_job, make_event
from tunegate.domain.jobs import JobStatus, job_event
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


def test_running_jobs_report_their_newest_step(store: SqlStore) -> None:
    job = add_job(store)
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        store.transition(job.id, status, events=[make_event(job.id)])
    assert store.running_progress() == {job.id: {}}
    for step in (1, 2):
        store.add_events([job_event(job.id, f"Step {step}", type="metrics",
                                    data={"step": step, "tokens_per_second": 10.0 * step})])
    assert store.running_progress() == {job.id: {"step": 2, "tokens_per_second": 20.0}}
