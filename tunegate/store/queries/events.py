"""The SQL store's job events (with a run's progress) and checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update

from tunegate.domain.jobs import RECORDS_PROGRESS, Checkpoint, JobEvent, JobStatus, progress_changes
from tunegate.store import schema
from tunegate.store.base import EventsAfter, Page
from tunegate.store.queries.common import SqlQueries
from tunegate.store.rows import as_checkpoint, as_event, change_values, event_values


class EventQueries(SqlQueries):
    """Job events and checkpoints: ``Store``'s event and checkpoint methods."""

    def add_events(self, events: Sequence[JobEvent]) -> None:
        if events:
            with self.engine.begin() as connection:
                connection.execute(insert(schema.job_events), [event_values(e) for e in events])

    def record_progress(self, job_id: str, worker_id: str, events: Sequence[JobEvent],
                        changes: Mapping[str, Any] | None = None) -> bool:
        table = schema.jobs
        with self.engine.begin() as connection:
            # Under SQLite's BEGIN IMMEDIATE (PostgreSQL: the row lock) no cancel can commit
            # between this check and the inserts.
            query = select(table.c.status).where(
                table.c.id == job_id, table.c.worker_id == worker_id,
                table.c.status.in_(sorted(status.value for status in RECORDS_PROGRESS)))
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()
            status = connection.execute(query).scalar()
            if status is None:
                return False
            if events:
                connection.execute(insert(schema.job_events), [event_values(e) for e in events])
            allowed = progress_changes(JobStatus(status), changes or {})
            if allowed:
                connection.execute(update(table).where(table.c.id == job_id)
                                   .values(**change_values(allowed)))
        return True

    def last_metrics_step(self, job_id: str) -> int:
        table = schema.job_events
        rows = self._read(select(table.c.data).where(table.c.job_id == job_id,
                                                     table.c.type == "metrics")
                          .order_by(table.c.id.desc()).limit(1), {})
        data = rows[0].data if rows else None
        return int(data.get("step", 0)) if data else 0

    def list_events(self, job_id: str, *, after: str | None, limit: int) -> Page[JobEvent]:
        rows, more = self._page(schema.job_events, {"job_id": job_id}, after=after, limit=limit)
        return Page([as_event(row) for row in rows], more)

    def has_event(self, job_id: str, event_id: str) -> bool:
        table = schema.job_events
        with self.engine.begin() as connection:
            return connection.execute(select(table.c.id).where(
                table.c.id == event_id, table.c.job_id == job_id)).first() is not None

    def events_after(self, after: Mapping[str, str | None], *, limit: int) -> EventsAfter:
        if not after:
            return EventsAfter({}, [], False)
        jobs, table = schema.jobs, schema.job_events
        wanted = [table.c.job_id == job_id if cursor is None
                  else and_(table.c.job_id == job_id, table.c.id > cursor)
                  for job_id, cursor in after.items()]
        with self.engine.begin() as connection:
            # Statuses first: a terminal status read here has its event among the rows below
            # (one transaction wrote both), under SQLite's lock and PostgreSQL's read committed.
            statuses = {row.id: JobStatus(row.status) for row in connection.execute(
                select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(sorted(after))))}
            rows = list(connection.execute(select(table).where(or_(*wanted))
                                           .order_by(table.c.id.asc()).limit(limit + 1)))
        return EventsAfter(statuses, [as_event(row) for row in rows[:limit]], len(rows) > limit)

    def add_checkpoint(self, checkpoint: Checkpoint, path: str) -> bool:
        table = schema.checkpoints
        with self.engine.begin() as connection:
            if connection.execute(select(table.c.id).where(
                    table.c.job_id == checkpoint.job_id,
                    table.c.step_number == checkpoint.step_number)).first() is not None:
                return False
            connection.execute(insert(table).values(
                id=checkpoint.id, job_id=checkpoint.job_id, created_at=checkpoint.created_at,
                fine_tuned_model_checkpoint=checkpoint.fine_tuned_model_checkpoint,
                step_number=checkpoint.step_number, metrics=checkpoint.metrics, path=path,
            ))
        return True

    def prune_checkpoints(self, job_id: str, keep: int) -> list[str]:
        table = schema.checkpoints
        with self.engine.begin() as connection:
            rows = list(connection.execute(select(table.c.id, table.c.path)
                                           .where(table.c.job_id == job_id)
                                           .order_by(table.c.id.desc()).offset(keep)))
            if rows:
                connection.execute(delete(table).where(table.c.id.in_([r.id for r in rows])))
        return [row.path for row in rows]

    def checkpoint_paths(self, job_id: str) -> dict[str, str]:
        table = schema.checkpoints
        rows = self._read(select(table.c.fine_tuned_model_checkpoint, table.c.path)
                          .where(table.c.job_id == job_id), {})
        return {row.fine_tuned_model_checkpoint: row.path for row in rows}

    def list_checkpoints(self, job_id: str, *, after: str | None,
                         limit: int) -> Page[Checkpoint]:
        rows, more = self._page(schema.checkpoints, {"job_id": job_id}, after=after,
                                limit=limit)
        return Page([as_checkpoint(row) for row in rows], more)
