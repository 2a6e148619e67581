"""The SQL store's jobs: creation under the active-job limit, the compare-and-set of a status
with its events, listings, and the workers' hold on a job (claim, heartbeat, disown)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from tunegate.domain.files import StoredFile
from tunegate.domain.jobs import (
    ACTIVE,
    TERMINAL,
    FineTuningJob,
    JobEvent,
    JobStatus,
    check_transition,
    entry_changes,
)
from tunegate.domain.webhooks import JOB_EVENTS
from tunegate.errors import Conflict, NotFound, TooManyRequests, clip
from tunegate.store import schema
from tunegate.store.base import FineTunedModel, OwnedJob, Page
from tunegate.store.queries.common import SqlQueries, in_project, project_where, select_by
from tunegate.store.queries.webhooks import enqueue_event
from tunegate.store.rows import (
    as_job,
    change_values,
    event_values,
    file_values,
    job_values,
    model_values,
)

# A job takes minutes: the SDK's two automatic resends, 30 s apart, give one a chance to end.
ACTIVE_JOBS_RETRY_SECONDS = 30
# The statuses a job enters when it stops running (or never starts): recording one must work on
# a full disk, or the job would stay `running` with nobody behind it (tunegate.store.reserve).
STOPPING = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED, JobStatus.PAUSED})


class JobQueries(SqlQueries):
    """Jobs and the workers that hold them: ``Store``'s job and worker-ownership methods."""

    def create_job(self, job: FineTuningJob, event: JobEvent,
                   max_active: int | None = None) -> None:
        with self.engine.begin() as connection:
            if max_active is not None:
                self._check_active_jobs(connection, job.project_id, max_active)
            connection.execute(insert(schema.jobs).values(**job_values(job)))
            connection.execute(insert(schema.job_events).values(**event_values(event)))

    def _check_active_jobs(self, connection: Connection, project_id: str, limit: int) -> None:
        """Refuse a new job while the project has ``limit`` waiting or training, counted in the
        inserting transaction so that two concurrent creates cannot both take the last place."""
        if self.engine.dialect.name == "postgresql":
            # SQLite's BEGIN IMMEDIATE already serializes writers; PostgreSQL needs a lock.
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(project_id))))
        table = schema.jobs
        active = connection.execute(select(func.count()).select_from(table).where(
            table.c.project_id == project_id,
            table.c.status.in_(sorted(status.value for status in ACTIVE)))).scalar_one()
        if active >= limit:
            raise TooManyRequests(
                f"This project has {active} fine-tuning jobs validating, queued or running, the "
                f"most it may have at once (setting TUNEGATE_MAX_ACTIVE_JOBS); retry when one "
                "has finished.", retry_after=ACTIVE_JOBS_RETRY_SECONDS,
                code="too_many_active_jobs")

    def job_counts(self) -> dict[tuple[str, str], int]:
        """(status, method type) -> how many jobs (every project)."""
        table = schema.jobs
        method = table.c.method["type"].as_string().label("method")
        rows = self._read(select(table.c.status, method, func.count().label("n"))
                          .group_by(table.c.status, method), {})
        return {(row.status, row.method or "supervised"): int(row.n) for row in rows}

    def queue_figures(self) -> tuple[int, int | None]:
        """How many jobs wait for a worker (validating_files, queued), and when the oldest of
        them was created (None: none waits)."""
        table = schema.jobs
        waiting = [JobStatus.VALIDATING_FILES.value, JobStatus.QUEUED.value]
        query: Any = select(func.count().label("n"), func.min(table.c.created_at)
                            .label("oldest")).where(table.c.status.in_(waiting))
        row = self._read(query, {})[0]
        return int(row.n), row.oldest

    def running_progress(self) -> dict[str, dict[str, Any]]:
        """Each running job's newest metrics event ``data`` (step, tokens_per_second, …);
        ``{}`` for one without a step yet."""
        jobs, events = schema.jobs, schema.job_events
        running = [row.id for row in self._read(
            select(jobs.c.id).where(jobs.c.status == JobStatus.RUNNING.value), {})]
        progress: dict[str, dict[str, Any]] = {}
        for job_id in running:
            rows = self._read(select(events.c.data).where(
                events.c.job_id == job_id, events.c.type == "metrics")
                .order_by(events.c.id.desc()).limit(1), {})
            progress[job_id] = dict(rows[0].data or {}) if rows else {}
        return progress

    def get_job(self, job_id: str, project_id: str | None = None) -> FineTuningJob | None:
        where = {"id": job_id, **project_where(project_id)}
        rows = self._read(select_by(schema.jobs, tuple(where)), where)
        return as_job(rows[0]) if rows else None

    def unfinished_jobs_using(self, project_id: str | None, *, file_id: str | None = None,
                              model: str | None = None) -> list[str]:
        table = schema.jobs
        uses = []
        if file_id is not None:
            uses += [table.c.training_file == file_id, table.c.validation_file == file_id]
        if model is not None:
            uses.append(table.c.model == model)
        query = (select(table.c.id)
                 .where(in_project(table, project_id), or_(*uses),
                        table.c.status.not_in(sorted(status.value for status in TERMINAL)))
                 .order_by(table.c.id))
        return [row.id for row in self._read(query, {})]

    def list_jobs(self, project_id: str | None, *, after: str | None, limit: int,
                  metadata: Mapping[str, str] | None) -> Page[FineTuningJob]:
        table = schema.jobs
        extra = [self._metadata_is(table.c.metadata, key, value)
                 for key, value in (metadata or {}).items()]
        rows, more = self._page(table, project_where(project_id), after=after, limit=limit,
                                extra=extra)
        return Page([as_job(row) for row in rows], more)

    def transition(self, job_id: str, target: JobStatus, *, events: Sequence[JobEvent],
                   changes: Mapping[str, Any] | None = None, worker_id: str | None = None,
                   only_from: frozenset[JobStatus] | None = None,
                   new_files: Sequence[StoredFile] = (),
                   new_models: Sequence[FineTunedModel] = (),
                   max_active: int | None = None, disown: bool = False) -> FineTuningJob:
        def write() -> FineTuningJob:
            return self._transition(job_id, target, events=events, changes=changes,
                                    worker_id=worker_id, only_from=only_from,
                                    new_files=new_files, new_models=new_models,
                                    max_active=max_active, disown=disown)

        return self._keeping_room(write) if target in STOPPING else write()

    def _transition(self, job_id: str, target: JobStatus, *, events: Sequence[JobEvent],
                    changes: Mapping[str, Any] | None, worker_id: str | None,
                    only_from: frozenset[JobStatus] | None, new_files: Sequence[StoredFile],
                    new_models: Sequence[FineTunedModel],
                    max_active: int | None, disown: bool) -> FineTuningJob:
        table = schema.jobs
        with self.engine.begin() as connection:
            row = connection.execute(select(table).where(table.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"No such fine-tuning job: {clip(job_id)}", param="fine_tuning_job_id",
                               code="fine_tuning_job_not_found")
            check_transition(job_id, JobStatus(row.status), target, only_from)
            # A job that already holds a place keeps it: only a job joining the active ones counts.
            if (max_active is not None and target in ACTIVE
                    and JobStatus(row.status) not in ACTIVE):
                self._check_active_jobs(connection, row.project_id, max_active)
            guard = and_(table.c.id == job_id, table.c.status == row.status)
            if worker_id is not None:
                guard = and_(guard, table.c.worker_id == worker_id)
            values = {**change_values({**entry_changes(target, int(time.time())), **(changes or {})}),
                      "status": target.value}
            if disown:
                values.update(worker_id=None, heartbeat_at=None)
            result = connection.execute(update(table).where(guard).values(**values))
            if result.rowcount != 1:
                # Unreachable under BEGIN IMMEDIATE unless the worker lost ownership.
                raise Conflict(f"Fine-tuning job {job_id} changed concurrently; retry.",
                               code="concurrent_update")
            if events:
                connection.execute(insert(schema.job_events), [event_values(e) for e in events])
            for file in new_files:
                connection.execute(insert(schema.files).values(**file_values(file)))
            for model in new_models:
                connection.execute(insert(schema.fine_tuned_models).values(**model_values(model)))
            if target.value in JOB_EVENTS:  # the webhook event exists exactly when the status does
                enqueue_event(connection, row.project_id, JOB_EVENTS[target.value], job_id,
                              int(time.time()))
            return as_job(connection.execute(select(table).where(table.c.id == job_id)).one())

    def update_job(self, job_id: str, changes: Mapping[str, Any]) -> None:
        table = schema.jobs
        with self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == job_id)
                               .values(**change_values(changes)))

    # Worker ownership -----------------------------------------------------------------------

    def claim_job(self, statuses: Sequence[JobStatus], worker_id: str,
                  now: float) -> FineTuningJob | None:
        table = schema.jobs
        query = (select(table.c.id)
                 .where(table.c.status.in_([s.value for s in statuses]),
                        table.c.worker_id.is_(None))
                 .order_by(table.c.id).limit(1))
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with self.engine.begin() as connection:
            job_id = connection.execute(query).scalar()
            if job_id is None:
                return None
            connection.execute(update(table)
                               .where(table.c.id == job_id, table.c.worker_id.is_(None))
                               .values(worker_id=worker_id, heartbeat_at=now))
            return as_job(connection.execute(select(table).where(table.c.id == job_id)).one())

    def heartbeat(self, job_id: str, worker_id: str, now: float) -> bool:
        table = schema.jobs
        with self.engine.begin() as connection:
            result = connection.execute(update(table)
                                        .where(table.c.id == job_id, table.c.worker_id == worker_id)
                                        .values(heartbeat_at=now))
        return result.rowcount == 1

    def disown_job(self, job_id: str, worker_id: str) -> bool:
        table = schema.jobs

        def write() -> bool:
            with self.engine.begin() as connection:
                result = connection.execute(
                    update(table).where(table.c.id == job_id, table.c.worker_id == worker_id)
                    .values(worker_id=None, heartbeat_at=None))
            return result.rowcount == 1

        return self._keeping_room(write)

    def owned_jobs(self) -> list[OwnedJob]:
        table = schema.jobs
        rows = self._read(select(table).where(table.c.worker_id.is_not(None)), {})
        return [OwnedJob(as_job(row), row.worker_id, row.heartbeat_at) for row in rows]
