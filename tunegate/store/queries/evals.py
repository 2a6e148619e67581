"""The store's evals, eval runs and output items (SQLAlchemy Core, SQLite and PostgreSQL).

Reached as ``SqlStore.evals``: its own object over the store's engines (not a part of the store
class as the other query modules are), so that the Evals API's names (``add_run``,
``claim_run``...) live in a namespace of their own. The same rules hold: a ``project_id`` of
``None`` sees every project (an admin's reads, the worker), writes that must not race are
compare-and-set in one transaction (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's row lock), ids
sort by creation so listings page by id.

A run is worked like a job: a worker claims it (``worker_id`` and a heartbeat on the row), and
``record_item`` writes one output item and grows the run's totals in one transaction, only
while that worker holds the run and it is ``in_progress``; a row already recorded is never
recorded again (a unique index), which is what lets a killed run resume without grading an item
twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.sql import ColumnElement

from tunegate.domain.evals import (
    FINISHED,
    UNFINISHED,
    Eval,
    EvalRun,
    OutputItem,
    RunStatus,
    RunTotals,
)
from tunegate.domain.webhooks import RUN_EVENTS
from tunegate.errors import Conflict, clip
from tunegate.store import schema
from tunegate.store.base import Page
from tunegate.store.queries.webhooks import enqueue_event


def _eval(row: Row[Any]) -> Eval:
    return Eval(id=row.id, project_id=row.project_id, created_at=row.created_at,
                updated_at=row.updated_at, name=row.name,
                data_source_config=row.data_source_config,
                testing_criteria=list(row.testing_criteria), metadata=row.metadata)


def _run(row: Row[Any]) -> EvalRun:
    return EvalRun(id=row.id, eval_id=row.eval_id, project_id=row.project_id,
                   created_at=row.created_at, status=RunStatus(row.status), model=row.model,
                   name=row.name, data_source=row.data_source, metadata=row.metadata,
                   error=row.error, totals=RunTotals.from_json(row.totals),
                   report_url=row.report_url, worker_id=row.worker_id,
                   heartbeat_at=row.heartbeat_at)


def _item(row: Row[Any]) -> OutputItem:
    return OutputItem(id=row.id, run_id=row.run_id, eval_id=row.eval_id,
                      project_id=row.project_id, created_at=row.created_at, status=row.status,
                      datasource_item_id=row.datasource_item_id,
                      datasource_item=row.datasource_item, results=list(row.results),
                      sample=row.sample, usage=row.usage, errored=bool(row.errored))


def _in_project(table: Table, project_id: str | None) -> ColumnElement[bool]:
    return table.c.project_id == project_id if project_id is not None else \
        table.c.id.is_not(None)


def _enqueue(connection: Connection, project_id: str, status: RunStatus, run_id: str) -> None:
    """The webhook event of a run that finished, in the transaction that finishes it."""
    if status.value in RUN_EVENTS:
        enqueue_event(connection, project_id, RUN_EVENTS[status.value], run_id, int(time.time()))


class SqlEvals:
    def __init__(self, engine: Engine, reads: Engine | None = None):
        self.engine = engine
        self._reads = reads or engine

    def _rows(self, query: Any) -> list[Row[Any]]:
        with self._reads.connect() as connection:
            return list(connection.execute(query).all())

    def _locked(self, query: Any) -> Any:
        """``query`` taking PostgreSQL's row lock (SQLite's BEGIN IMMEDIATE serializes)."""
        return query.with_for_update() if self.engine.dialect.name == "postgresql" else query

    def _page(self, table: Table, where: Sequence[ColumnElement[bool]], *, after: str | None,
              limit: int, ascending: bool, order: Any = None) -> tuple[list[Row[Any]], bool]:
        """Keyset paging on the time-ordered ids; ``order`` (another column) pages by
        (that column, id), looking the cursor's row up."""
        column = order if order is not None else table.c.id
        conditions = list(where)
        if after is not None:
            if order is None:
                conditions.append(table.c.id > after if ascending else table.c.id < after)
            else:
                cursor = self._rows(select(order).where(table.c.id == after))
                if cursor:
                    value = cursor[0][0]
                    later = (column > value) if ascending else (column < value)
                    same = and_(column == value,
                                table.c.id > after if ascending else table.c.id < after)
                    conditions.append(or_(later, same))
        direction = [column.asc(), table.c.id.asc()] if ascending else \
            [column.desc(), table.c.id.desc()]
        rows = self._rows(select(table).where(*conditions).order_by(*direction)
                          .limit(limit + 1))
        return rows[:limit], len(rows) > limit

    # Evals ----------------------------------------------------------------------------------

    def add_eval(self, item: Eval) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.evals).values(
                id=item.id, project_id=item.project_id, created_at=item.created_at,
                updated_at=item.updated_at, name=item.name,
                data_source_config=item.data_source_config,
                testing_criteria=item.testing_criteria, metadata=item.metadata))

    def get_eval(self, project_id: str | None, eval_id: str) -> Eval | None:
        table = schema.evals
        rows = self._rows(select(table).where(table.c.id == eval_id,
                                              _in_project(table, project_id)))
        return _eval(rows[0]) if rows else None

    def list_evals(self, project_id: str | None, *, after: str | None, limit: int,
                   ascending: bool, by_updated: bool = False) -> Page[Eval]:
        table = schema.evals
        rows, more = self._page(table, [_in_project(table, project_id)], after=after,
                                limit=limit, ascending=ascending,
                                order=table.c.updated_at if by_updated else None)
        return Page([_eval(row) for row in rows], more)

    def update_eval(self, project_id: str | None, eval_id: str, changes: Mapping[str, Any],
                    at: int) -> Eval | None:
        table = schema.evals
        with self.engine.begin() as connection:
            found = connection.execute(update(table).where(
                table.c.id == eval_id, _in_project(table, project_id))
                .values(**changes, updated_at=at))
            if found.rowcount != 1:
                return None
            return _eval(connection.execute(select(table).where(table.c.id == eval_id)).one())

    def delete_eval(self, project_id: str | None, eval_id: str) -> bool:
        """The eval with its runs and their output items, in one transaction (a worker grading
        one of its runs finds the run gone at its next item)."""
        table = schema.evals
        with self.engine.begin() as connection:
            found = connection.execute(delete(table).where(
                table.c.id == eval_id, _in_project(table, project_id)))
            if found.rowcount != 1:
                return False
            connection.execute(delete(schema.eval_output_items)
                               .where(schema.eval_output_items.c.eval_id == eval_id))
            connection.execute(delete(schema.eval_runs)
                               .where(schema.eval_runs.c.eval_id == eval_id))
        return True

    # Runs -----------------------------------------------------------------------------------

    def add_run(self, run: EvalRun) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.eval_runs).values(
                id=run.id, eval_id=run.eval_id, project_id=run.project_id,
                created_at=run.created_at, status=run.status.value, model=run.model,
                name=run.name, data_source=run.data_source, metadata=run.metadata,
                error=run.error, totals=run.totals.to_json(), report_url=run.report_url))

    def add_graded_run(self, run: EvalRun, items: Sequence[OutputItem]) -> bool:
        """Record a run graded elsewhere (a reinforcement job's validation, which its trainer
        sampled and graded) whole, in one transaction: the run as given (a finished status,
        no worker: no worker ever claims it), its totals those of ``items``, and every output
        item. ``False``, with nothing written, when the eval already has a run of that name
        (recorded before a worker died) or no longer exists."""
        runs = schema.eval_runs
        totals = RunTotals()
        for item in items:
            totals.add(item)
        with self.engine.begin() as connection:
            if connection.execute(self._locked(select(schema.evals.c.id).where(
                    schema.evals.c.id == run.eval_id))).first() is None:
                return False
            if connection.execute(select(runs.c.id).where(
                    runs.c.eval_id == run.eval_id, runs.c.name == run.name)).first() is not None:
                return False
            connection.execute(insert(runs).values(
                id=run.id, eval_id=run.eval_id, project_id=run.project_id,
                created_at=run.created_at, status=run.status.value, model=run.model,
                name=run.name, data_source=run.data_source, metadata=run.metadata,
                error=run.error, totals=totals.to_json(), report_url=run.report_url))
            for item in items:
                connection.execute(insert(schema.eval_output_items).values(
                    id=item.id, run_id=run.id, eval_id=item.eval_id,
                    project_id=item.project_id, created_at=item.created_at,
                    status=item.status, datasource_item_id=item.datasource_item_id,
                    datasource_item=item.datasource_item, results=item.results,
                    sample=item.sample, usage=item.usage, errored=int(item.errored)))
            _enqueue(connection, run.project_id, run.status, run.id)  # as a worker's run would
        return True

    def get_run(self, project_id: str | None, eval_id: str | None, run_id: str) -> EvalRun | None:
        """The run; ``eval_id`` None: whichever eval it belongs to (the worker)."""
        table = schema.eval_runs
        where = [table.c.id == run_id, _in_project(table, project_id)]
        if eval_id is not None:
            where.append(table.c.eval_id == eval_id)
        rows = self._rows(select(table).where(*where))
        return _run(rows[0]) if rows else None

    def list_runs(self, project_id: str | None, eval_id: str, *, after: str | None, limit: int,
                  ascending: bool, status: str | None) -> Page[EvalRun]:
        table = schema.eval_runs
        where = [table.c.eval_id == eval_id, _in_project(table, project_id)]
        if status is not None:
            where.append(table.c.status == status)
        rows, more = self._page(table, where, after=after, limit=limit, ascending=ascending)
        return Page([_run(row) for row in rows], more)

    def cancel_run(self, project_id: str | None, eval_id: str, run_id: str) -> EvalRun | None:
        """Compare-and-set a queued or in-progress run to ``canceled`` (its worker, if any,
        stops at its next item: ``record_item`` refuses); ``Conflict`` naming the status of a
        finished one; ``None`` when there is no such run."""
        table = schema.eval_runs
        with self.engine.begin() as connection:
            row = connection.execute(self._locked(select(table).where(
                table.c.id == run_id, table.c.eval_id == eval_id,
                _in_project(table, project_id)))).first()
            if row is None:
                return None
            if RunStatus(row.status) in FINISHED:
                raise Conflict(f"Eval run {clip(run_id)} is {row.status}: only a queued or "
                               "in_progress run can be canceled.", param="run_id",
                               code="invalid_run_status")
            connection.execute(update(table).where(table.c.id == run_id)
                               .values(status=RunStatus.CANCELED.value))
            _enqueue(connection, row.project_id, RunStatus.CANCELED, run_id)
            return _run(connection.execute(select(table).where(table.c.id == run_id)).one())

    def delete_run(self, project_id: str | None, eval_id: str, run_id: str) -> bool:
        table = schema.eval_runs
        with self.engine.begin() as connection:
            found = connection.execute(delete(table).where(
                table.c.id == run_id, table.c.eval_id == eval_id,
                _in_project(table, project_id)))
            if found.rowcount != 1:
                return False
            connection.execute(delete(schema.eval_output_items)
                               .where(schema.eval_output_items.c.run_id == run_id))
        return True

    # The worker's side ----------------------------------------------------------------------

    def claim_run(self, worker_id: str, now: float) -> EvalRun | None:
        """Atomically take the oldest unowned unfinished run (a queued one, or one whose worker
        died in the middle) and mark it ``in_progress``."""
        table = schema.eval_runs
        query = (select(table.c.id)
                 .where(table.c.status.in_(sorted(status.value for status in UNFINISHED)),
                        table.c.worker_id.is_(None))
                 .order_by(table.c.id).limit(1))
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with self.engine.begin() as connection:
            run_id = connection.execute(query).scalar()
            if run_id is None:
                return None
            connection.execute(update(table).where(table.c.id == run_id,
                                                   table.c.worker_id.is_(None))
                               .values(worker_id=worker_id, heartbeat_at=now,
                                       status=RunStatus.IN_PROGRESS.value))
            return _run(connection.execute(select(table).where(table.c.id == run_id)).one())

    def heartbeat_run(self, run_id: str, worker_id: str, now: float) -> bool:
        table = schema.eval_runs
        with self.engine.begin() as connection:
            result = connection.execute(update(table).where(
                table.c.id == run_id, table.c.worker_id == worker_id).values(heartbeat_at=now))
        return result.rowcount == 1

    def disown_run(self, run_id: str, worker_id: str) -> bool:
        table = schema.eval_runs
        with self.engine.begin() as connection:
            result = connection.execute(update(table).where(
                table.c.id == run_id, table.c.worker_id == worker_id)
                .values(worker_id=None, heartbeat_at=None))
        return result.rowcount == 1

    def owned_runs(self) -> list[EvalRun]:
        """Every run a worker holds (the reaper's view)."""
        table = schema.eval_runs
        return [_run(row) for row in self._rows(select(table).where(
            table.c.worker_id.is_not(None)))]

    def _held(self, connection: Connection, run_id: str, worker_id: str) -> Row[Any] | None:
        table = schema.eval_runs
        return connection.execute(self._locked(select(table).where(
            table.c.id == run_id, table.c.worker_id == worker_id,
            table.c.status == RunStatus.IN_PROGRESS.value))).first()

    def recorded_rows(self, run_id: str) -> set[int]:
        """The data source rows (``datasource_item_id``) the run has output items for."""
        table = schema.eval_output_items
        return {row[0] for row in self._rows(select(table.c.datasource_item_id)
                                             .where(table.c.run_id == run_id))}

    def record_item(self, item: OutputItem, worker_id: str) -> bool:
        """Insert ``item`` and add it to its run's totals, atomically, while ``worker_id``
        holds the run and it is ``in_progress``; ``False`` (nothing written) when it does not
        (canceled, deleted, taken over) or the row was recorded already."""
        items = schema.eval_output_items
        with self.engine.begin() as connection:
            run = self._held(connection, item.run_id, worker_id)
            if run is None:
                return False
            if connection.execute(select(items.c.id).where(
                    items.c.run_id == item.run_id,
                    items.c.datasource_item_id == item.datasource_item_id)).first() is not None:
                return False
            connection.execute(insert(items).values(
                id=item.id, run_id=item.run_id, eval_id=item.eval_id,
                project_id=item.project_id, created_at=item.created_at, status=item.status,
                datasource_item_id=item.datasource_item_id,
                datasource_item=item.datasource_item, results=item.results,
                sample=item.sample, usage=item.usage, errored=int(item.errored)))
            totals = RunTotals.from_json(run.totals)
            totals.add(item)
            connection.execute(update(schema.eval_runs).where(schema.eval_runs.c.id == run.id)
                               .values(totals=totals.to_json()))
        return True

    def finish_run(self, run_id: str, worker_id: str, status: RunStatus,
                   error: Mapping[str, str] | None = None) -> bool:
        """Compare-and-set the held ``in_progress`` run to ``status`` and give it up;
        ``False`` when the worker no longer holds it or it was canceled."""
        table = schema.eval_runs
        values: dict[str, Any] = {"status": status.value, "worker_id": None,
                                  "heartbeat_at": None}
        if error is not None:
            values["error"] = dict(error)
        with self.engine.begin() as connection:
            held = self._held(connection, run_id, worker_id)
            if held is None:
                return False
            connection.execute(update(table).where(table.c.id == run_id).values(**values))
            _enqueue(connection, held.project_id, status, run_id)
        return True

    # Output items ---------------------------------------------------------------------------

    def list_items(self, project_id: str | None, eval_id: str, run_id: str, *,
                   after: str | None, limit: int, ascending: bool,
                   status: str | None) -> Page[OutputItem]:
        table = schema.eval_output_items
        where = [table.c.run_id == run_id, table.c.eval_id == eval_id,
                 _in_project(table, project_id)]
        if status is not None:
            where.append(table.c.status == status)
        rows, more = self._page(table, where, after=after, limit=limit, ascending=ascending)
        return Page([_item(row) for row in rows], more)

    def get_item(self, project_id: str | None, eval_id: str, run_id: str,
                 item_id: str) -> OutputItem | None:
        table = schema.eval_output_items
        rows = self._rows(select(table).where(
            table.c.id == item_id, table.c.run_id == run_id, table.c.eval_id == eval_id,
            _in_project(table, project_id)))
        return _item(rows[0]) if rows else None
