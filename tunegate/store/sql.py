"""``Store`` on SQLAlchemy Core: SQLite (the embedded default) or PostgreSQL.

SQLite runs in WAL mode and every writing transaction starts with ``BEGIN IMMEDIATE``, so a
compare-and-set or a claim is serialized across processes (the API and its workers) without
lost updates; PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``.

Reads of one statement (``_read``) take no lock: on SQLite they go through a second engine
whose connections never issue ``BEGIN`` (in WAL mode a statement sees the last commit and never
waits for a writer), so the API's listings queue neither behind each other nor behind a
worker's writes. The statements of the frequent reads are built once (``_select``) with bound
parameters, which spares SQLAlchemy rebuilding and re-keying them on every request.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Integer,
    Row,
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.sql import ColumnElement, Select

from tunegate.domain.files import StoredFile
from tunegate.domain.jobs import (
    ACTIVE,
    RECORDS_PROGRESS,
    TERMINAL,
    Checkpoint,
    EventLevel,
    FineTuningJob,
    JobError,
    JobEvent,
    JobStatus,
    check_transition,
    entry_changes,
    progress_changes,
)
from tunegate.domain.models import CheckpointPermission
from tunegate.domain.uploads import StoredUpload, UploadPart, UploadStatus
from tunegate.errors import (
    Conflict,
    InsufficientStorage,
    InvalidRequest,
    NotFound,
    TooManyRequests,
    clip,
)
from tunegate.store import schema
from tunegate.store.base import EventsAfter, FineTunedModel, OwnedJob, Page
from tunegate.store.evals import SqlEvals
from tunegate.store.migrations.migrate import migrate
from tunegate.store.reserve import FILE_NAME as RESERVE_FILE
from tunegate.store.reserve import DiskReserve

SQLITE_BUSY_TIMEOUT_MS = 30_000
# "database or disk is full": SQLite's SQLITE_FULL (the file system, or max_page_count), and
# PostgreSQL's SQLSTATE 53100 (disk_full).
POSTGRES_DISK_FULL = "53100"
# A worker's host that dies (or loses its network) inside a transaction keeps that transaction's
# row locks until PostgreSQL notices the connection is gone, which TCP keepalives take hours
# to do: the heartbeat takeover of its job would wait on the job row that long. Every tunegate
# transaction is a few statements, never idle, so a session idle inside one is such a host's.
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT = "30s"
# A job takes minutes: the SDK's two automatic resends, 30 s apart, give one a chance to end.
ACTIVE_JOBS_RETRY_SECONDS = 30
# The statuses a job enters when it stops running (or never starts): recording one must work on
# a full disk, or the job would stay `running` with nobody behind it (tunegate.store.reserve).
STOPPING = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED, JobStatus.PAUSED})

T = TypeVar("T")


def _configure_sqlite(engine: Engine, *, writes: bool = True) -> None:
    """WAL, the busy timeout and explicit transactions; ``writes``: each one BEGIN IMMEDIATE."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions defer locking).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if not writes:
        # No "begin" listener: each statement is its own read transaction (autocommit), which
        # in WAL mode waits for no writer.
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET idle_in_transaction_session_timeout = "
                       f"'{POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT}'")
        cursor.close()
        dbapi_connection.commit()  # the driver opened a transaction for the SET


def _is_full(driver_error: BaseException) -> bool:
    if getattr(driver_error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return POSTGRES_DISK_FULL in (getattr(driver_error, "sqlstate", None),
                                  getattr(driver_error, "pgcode", None))


def _translate_errors(engine: Engine) -> None:
    """A full disk is the operator's to fix, not a bug: it leaves the store as
    ``InsufficientStorage`` (507), whichever statement or commit met it. Raised from here, it
    leaves ``engine.begin()`` like any error, which rolls the transaction back."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if _is_full(context.original_exception):
            raise InsufficientStorage() from context.sqlalchemy_exception


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C, behind json.loads


def _json_loads(text: str | bytes) -> Any:
    """A JSON column's value: one call of the C scanner for the text ``json.dumps`` wrote (a job
    row holds five, most of them ``null``; ``json.loads`` costs three Python calls more), and
    ``json.loads`` for anything else (bytes from psycopg, leading blanks) and for its errors."""
    if not isinstance(text, str):
        return json.loads(text)
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def open_store(url: str) -> SqlStore:
    """Connect, apply migrations, and return a ready store."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_deserializer=_json_loads)
    _translate_errors(engine)
    reads = reserve = None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
        reads = create_engine(url, json_deserializer=_json_loads)
        _translate_errors(reads)  # a read's temporary sort file may meet a full disk too
        _configure_sqlite(reads, writes=False)
        if engine.url.database and engine.url.database != ":memory:":
            reserve = DiskReserve(Path(engine.url.database).parent / RESERVE_FILE)
            reserve.restore()
    elif engine.dialect.name == "postgresql":
        # PostgreSQL's disk is the database server's: it keeps its own room.
        _configure_postgresql(engine)
    migrate(engine)
    return SqlStore(engine, reads, reserve)


# Row -> domain object. Rows of ``select(table)`` are read by position (a Row's attribute
# access costs ~0.3 us a field, which a listing of 50 jobs pays 950 times): the columns named
# like the domain class's fields, in the order of its fields.

Domain = TypeVar("Domain")


def _from_row(table: Table, domain_class: type[Domain],
              **convert: Callable[[Any], Any]) -> Callable[[Row[Any]], Domain]:
    """``row of select(table) -> domain_class(...)``, each field from the column of its name,
    passed through ``convert[name]`` where given."""
    names = [field.name for field in dataclasses.fields(domain_class)]  # type: ignore[arg-type]
    columns = list(table.c.keys())
    values_of = itemgetter(*(columns.index(name) for name in names))
    converters = [(names.index(name), function) for name, function in convert.items()]

    def build(row: Row[Any]) -> Domain:
        values = list(values_of(row))
        for index, function in converters:
            values[index] = function(values[index])
        return domain_class(*values)

    return build


_file = _from_row(schema.files, StoredFile)


def _file_values(file: StoredFile) -> dict[str, Any]:
    return {
        "id": file.id, "project_id": file.project_id, "bytes": file.bytes,
        "created_at": file.created_at, "filename": file.filename, "purpose": file.purpose,
        "expires_at": file.expires_at, "status": file.status,
        "status_details": file.status_details,
    }


def _model_values(model: FineTunedModel) -> dict[str, Any]:
    return {
        "id": model.id, "project_id": model.project_id, "job_id": model.job_id,
        "base_model": model.base_model, "created_at": model.created_at, "kind": model.kind,
        "path": model.path,
    }


_job = _from_row(schema.jobs, FineTuningJob, status=JobStatus,
                 error=lambda error: JobError(**error) if error else None,
                 result_files=lambda files: list(files or []))


def _job_values(job: FineTuningJob) -> dict[str, Any]:
    return {
        "id": job.id, "project_id": job.project_id, "created_at": job.created_at,
        "model": job.model, "organization_id": job.organization_id, "status": job.status.value,
        "training_file": job.training_file, "validation_file": job.validation_file,
        "method": job.method, "seed": job.seed, "suffix": job.suffix, "metadata": job.metadata,
        "integrations": job.integrations, "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at, "trained_tokens": job.trained_tokens,
        "error": job.error.to_api() if job.error else None, "result_files": job.result_files,
        "estimated_finish": job.estimated_finish,
    }


_event = _from_row(schema.job_events, JobEvent, level=EventLevel)


def _event_values(item: JobEvent) -> dict[str, Any]:
    return {
        "id": item.id, "job_id": item.job_id, "created_at": item.created_at,
        "level": item.level.value, "message": item.message, "type": item.type, "data": item.data,
    }


_checkpoint = _from_row(schema.checkpoints, Checkpoint)
_model = _from_row(schema.fine_tuned_models, FineTunedModel)
_upload = _from_row(schema.uploads, StoredUpload, status=UploadStatus)
_upload_part = _from_row(schema.upload_parts, UploadPart)
_permission = _from_row(schema.checkpoint_permissions, CheckpointPermission)


def _upload_conflict(upload: StoredUpload, at: int, doing: str) -> Conflict:
    status = upload.status_at(at).value
    return Conflict(f"Upload {upload.id} is {status}: {doing} only while it is pending.",
                    param="upload_id", code="invalid_upload_status")


def _in_project(table: Any, project_id: str | None) -> Any:
    """The row filter of a project; ``None`` (an admin's reads) matches every project."""
    return true() if project_id is None else table.c.project_id == project_id


def _project(project_id: str | None) -> dict[str, str]:
    """The ``where`` of ``_select`` for a project's rows; ``{}`` (every project) for ``None``."""
    return {} if project_id is None else {"project_id": project_id}


@functools.cache
def _select(table: Table, equal: tuple[str, ...], *, after: str | None = None,
            order: tuple[str, ...] = (), page: bool = False,
            unexpired: bool = False) -> Select[Any]:
    """``SELECT * FROM table WHERE column = :column (each of equal) [AND id > / < :after]
    [AND (expires_at IS NULL OR expires_at > :at)] ORDER BY ... [LIMIT :limit]``, built once
    per shape and executed with the values as parameters. ``after`` is ">" or "<"; ``order``
    names columns, "-" first for descending."""
    query = select(table).where(*(table.c[name] == bindparam(name) for name in equal))
    if after is not None:
        bound: Any = bindparam("after")
        query = query.where(table.c.id > bound if after == ">" else table.c.id < bound)
    if unexpired:
        query = query.where(or_(table.c.expires_at.is_(None),
                                table.c.expires_at > bindparam("at")))
    for name in order:
        query = query.order_by(table.c[name[1:]].desc() if name[0] == "-" else table.c[name])
    return query.limit(bindparam("limit", type_=Integer)) if page else query


@functools.cache
def _visible_models(*, by_id: bool, of_project: bool) -> Select[Any]:
    """Fine-tuned models (``:id`` only, with ``by_id``) that project ``:project_id`` owns or
    was given a permission for (every project's without ``of_project``), oldest first."""
    table, shared = schema.fine_tuned_models, schema.checkpoint_permissions
    query = select(table)
    if by_id:
        query = query.where(table.c.id == bindparam("id"))
    if of_project:
        project: Any = bindparam("project_id")
        query = query.where(or_(table.c.project_id == project, exists(select(1).where(
            shared.c.model_id == table.c.id, shared.c.project_id == project))))
    return query.order_by(table.c.created_at, table.c.id)


_EXPIRED_FILES = select(schema.files).where(schema.files.c.expires_at.is_not(None),
                                            schema.files.c.expires_at <= bindparam("now"))


def _change_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Domain values -> column values (errors to dicts); ``status`` is not changeable here."""
    if "status" in changes:
        raise ValueError("status changes only through Store.transition")
    values = dict(changes)
    if isinstance(values.get("error"), JobError):
        values["error"] = values["error"].to_api()
    return values


class SqlStore:
    """The SQL implementation of ``tunegate.store.base.Store``."""

    def __init__(self, engine: Engine, reads: Engine | None = None,
                 reserve: DiskReserve | None = None):
        """``reads``: the engine of single-statement reads (default: ``engine``); ``reserve``:
        the space kept for writes that must work on a full disk (SQLite)."""
        self.engine = engine
        self._reads = reads or engine
        self.reserve = reserve
        # The Evals API's tables, queried by a module of their own.
        self.evals = SqlEvals(engine, self._reads)

    def close(self) -> None:
        self.engine.dispose()
        if self._reads is not self.engine:
            self._reads.dispose()

    def _read(self, query: Select[Any], values: Mapping[str, Any]) -> list[Row[Any]]:
        """All rows of one read-only statement."""
        with self._reads.connect() as connection:
            return list(connection.execute(query, dict(values)).all())

    def _keeping_room(self, write: Callable[[], T]) -> T:
        """``write()``, which frees space or records how a job stopped: on a full disk, once
        more after releasing the reserve (tunegate.store.reserve)."""
        try:
            return write()
        except InsufficientStorage:
            if self.reserve is None or not self.reserve.release():
                raise
        return write()

    def restore_reserve(self) -> bool:
        if self.reserve is None:
            return True
        return self.reserve.restore()

    def identity(self) -> str:
        with self.engine.begin() as connection:
            return str(connection.execute(select(schema.store_identity.c.id)).scalar_one())

    # Paging ---------------------------------------------------------------------------------

    def _page(self, table: Table, where: Mapping[str, Any], *, after: str | None, limit: int,
              ascending: bool = False, unexpired_at: int | None = None,
              extra: Sequence[ColumnElement[bool]] = ()) -> tuple[list[Row[Any]], bool]:
        """Keyset paging on time-ordered ids: ``after`` needs no lookup and survives deletes.

        ``where``: column = value filters; ``unexpired_at``: only rows whose ``expires_at`` is
        unset or later; ``extra``: further conditions (a statement with them is built per
        call)."""
        query = _select(table, tuple(where), after=None if after is None else
                        ">" if ascending else "<", order=("id" if ascending else "-id",),
                        page=True, unexpired=unexpired_at is not None)
        if extra:
            query = query.where(*extra)
        values = {**where, "limit": limit + 1, **({} if after is None else {"after": after}),
                  **({} if unexpired_at is None else {"at": unexpired_at})}
        rows = self._read(query, values)
        return rows[:limit], len(rows) > limit

    # Files ----------------------------------------------------------------------------------

    def add_file(self, file: StoredFile) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.files).values(**_file_values(file)))

    def get_file(self, project_id: str | None, file_id: str) -> StoredFile | None:
        where = {"id": file_id, **_project(project_id)}
        rows = self._read(_select(schema.files, tuple(where)), where)
        return _file(rows[0]) if rows else None

    def list_files(self, project_id: str | None, *, purpose: str | None, after: str | None,
                   limit: int, ascending: bool, at: int | None = None) -> Page[StoredFile]:
        where = {**_project(project_id), **({} if purpose is None else {"purpose": purpose})}
        rows, more = self._page(schema.files, where, after=after, limit=limit,
                                ascending=ascending, unexpired_at=at)
        return Page([_file(row) for row in rows], more)

    def delete_file(self, project_id: str | None, file_id: str) -> bool:
        table = schema.files

        def write() -> bool:
            with self.engine.begin() as connection:
                result = connection.execute(delete(table).where(
                    table.c.id == file_id, _in_project(table, project_id)))
            return result.rowcount > 0

        return self._keeping_room(write)

    def expired_files(self, now: int) -> list[StoredFile]:
        return [_file(row) for row in self._read(_EXPIRED_FILES, {"now": now})]

    def known_file_ids(self, file_ids: Sequence[str]) -> set[str]:
        table = schema.files
        known: set[str] = set()
        with self.engine.begin() as connection:
            for start in range(0, len(file_ids), 500):  # under every driver's parameter limit
                chunk = list(file_ids[start:start + 500])
                known.update(connection.execute(
                    select(table.c.id).where(table.c.id.in_(chunk))).scalars())
        return known

    # Jobs -----------------------------------------------------------------------------------

    def create_job(self, job: FineTuningJob, event: JobEvent,
                   max_active: int | None = None) -> None:
        with self.engine.begin() as connection:
            if max_active is not None:
                self._check_active_jobs(connection, job.project_id, max_active)
            connection.execute(insert(schema.jobs).values(**_job_values(job)))
            connection.execute(insert(schema.job_events).values(**_event_values(event)))

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

    def get_job(self, job_id: str, project_id: str | None = None) -> FineTuningJob | None:
        where = {"id": job_id, **_project(project_id)}
        rows = self._read(_select(schema.jobs, tuple(where)), where)
        return _job(rows[0]) if rows else None

    def unfinished_jobs_using(self, project_id: str | None, *, file_id: str | None = None,
                              model: str | None = None) -> list[str]:
        table = schema.jobs
        uses = []
        if file_id is not None:
            uses += [table.c.training_file == file_id, table.c.validation_file == file_id]
        if model is not None:
            uses.append(table.c.model == model)
        query = (select(table.c.id)
                 .where(_in_project(table, project_id), or_(*uses),
                        table.c.status.not_in(sorted(status.value for status in TERMINAL)))
                 .order_by(table.c.id))
        return [row.id for row in self._read(query, {})]

    def list_jobs(self, project_id: str | None, *, after: str | None, limit: int,
                  metadata: Mapping[str, str] | None) -> Page[FineTuningJob]:
        table = schema.jobs
        extra = [self._metadata_is(table.c.metadata, key, value)
                 for key, value in (metadata or {}).items()]
        rows, more = self._page(table, _project(project_id), after=after, limit=limit,
                                extra=extra)
        return Page([_job(row) for row in rows], more)

    def _metadata_is(self, column: Any, key: str, value: str) -> Any:
        if self.engine.dialect.name != "sqlite":
            return column[key].as_string() == value
        # SQLite's JSON paths cannot name every key (a '"' or NUL in one is a path error, a 500):
        # look the key up among the object's entries instead.
        entries = func.json_each(column).table_valued("key", "value")
        return exists(select(1).select_from(entries).where(
            entries.c.key == key, entries.c.value == value))

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
            values = {**_change_values({**entry_changes(target, int(time.time())), **(changes or {})}),
                      "status": target.value}
            if disown:
                values.update(worker_id=None, heartbeat_at=None)
            result = connection.execute(update(table).where(guard).values(**values))
            if result.rowcount != 1:
                # Unreachable under BEGIN IMMEDIATE unless the worker lost ownership.
                raise Conflict(f"Fine-tuning job {job_id} changed concurrently; retry.",
                               code="concurrent_update")
            if events:
                connection.execute(insert(schema.job_events), [_event_values(e) for e in events])
            for file in new_files:
                connection.execute(insert(schema.files).values(**_file_values(file)))
            for model in new_models:
                connection.execute(insert(schema.fine_tuned_models).values(**_model_values(model)))
            return _job(connection.execute(select(table).where(table.c.id == job_id)).one())

    def update_job(self, job_id: str, changes: Mapping[str, Any]) -> None:
        table = schema.jobs
        with self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == job_id)
                               .values(**_change_values(changes)))

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
            return _job(connection.execute(select(table).where(table.c.id == job_id)).one())

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
        return [OwnedJob(_job(row), row.worker_id, row.heartbeat_at) for row in rows]

    # Events and checkpoints -----------------------------------------------------------------

    def add_events(self, events: Sequence[JobEvent]) -> None:
        if events:
            with self.engine.begin() as connection:
                connection.execute(insert(schema.job_events), [_event_values(e) for e in events])

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
                connection.execute(insert(schema.job_events), [_event_values(e) for e in events])
            allowed = progress_changes(JobStatus(status), changes or {})
            if allowed:
                connection.execute(update(table).where(table.c.id == job_id)
                                   .values(**_change_values(allowed)))
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
        return Page([_event(row) for row in rows], more)

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
        return EventsAfter(statuses, [_event(row) for row in rows[:limit]], len(rows) > limit)

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
        return Page([_checkpoint(row) for row in rows], more)

    # Fine-tuned models ----------------------------------------------------------------------

    def add_model(self, model: FineTunedModel) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.fine_tuned_models).values(**_model_values(model)))

    def get_model(self, project_id: str | None, model_id: str) -> FineTunedModel | None:
        query = _visible_models(by_id=True, of_project=project_id is not None)
        rows = self._read(query, {"id": model_id, **_project(project_id)})
        return _model(rows[0]) if rows else None

    def list_models(self, project_id: str | None) -> list[FineTunedModel]:
        query = _visible_models(by_id=False, of_project=project_id is not None)
        return [_model(row) for row in self._read(query, _project(project_id))]

    def delete_model(self, project_id: str | None, model_id: str) -> bool:
        table, shared = schema.fine_tuned_models, schema.checkpoint_permissions

        def write() -> bool:
            with self.engine.begin() as connection:
                result = connection.execute(delete(table).where(
                    table.c.id == model_id, _in_project(table, project_id)))
                if result.rowcount > 0:
                    connection.execute(delete(shared).where(shared.c.model_id == model_id))
            return result.rowcount > 0

        return self._keeping_room(write)

    # Checkpoint permissions -----------------------------------------------------------------

    def add_permissions(self, model_id: str,
                        permissions: Sequence[CheckpointPermission]) -> list[CheckpointPermission]:
        table = schema.checkpoint_permissions
        projects = sorted({permission.project_id for permission in permissions})
        with self.engine.begin() as connection:
            held = {row.project_id: _permission(row) for row in connection.execute(
                select(table).where(table.c.model_id == model_id,
                                    table.c.project_id.in_(projects)))}
            granted: list[CheckpointPermission] = []
            for permission in permissions:
                if permission.project_id not in held:
                    connection.execute(insert(table).values(
                        id=permission.id, model_id=model_id, project_id=permission.project_id,
                        created_at=permission.created_at))
                    held[permission.project_id] = replace(permission, model_id=model_id)
                granted.append(held[permission.project_id])
        return granted

    def list_permissions(self, model_id: str, *, project_id: str | None, after: str | None,
                         limit: int, ascending: bool) -> Page[CheckpointPermission]:
        where = {"model_id": model_id, **_project(project_id)}
        rows, more = self._page(schema.checkpoint_permissions, where, after=after, limit=limit,
                                ascending=ascending)
        return Page([_permission(row) for row in rows], more)

    def delete_permission(self, model_id: str, permission_id: str) -> bool:
        table = schema.checkpoint_permissions
        with self.engine.begin() as connection:
            result = connection.execute(delete(table).where(
                table.c.id == permission_id, table.c.model_id == model_id))
        return result.rowcount > 0

    # Uploads --------------------------------------------------------------------------------

    def add_upload(self, upload: StoredUpload) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.uploads).values(
                id=upload.id, project_id=upload.project_id, created_at=upload.created_at,
                expires_at=upload.expires_at, filename=upload.filename, purpose=upload.purpose,
                bytes=upload.bytes, mime_type=upload.mime_type, status=upload.status.value,
                file_expires_after=upload.file_expires_after, file_id=upload.file_id))

    def get_upload(self, project_id: str | None, upload_id: str) -> StoredUpload | None:
        where = {"id": upload_id, **_project(project_id)}
        rows = self._read(_select(schema.uploads, tuple(where)), where)
        return _upload(rows[0]) if rows else None

    def _pending_upload(self, connection: Connection, upload_id: str, at: int,
                        doing: str) -> StoredUpload:
        """The upload, locked for this transaction, if it is pending and not expired."""
        query = select(schema.uploads).where(schema.uploads.c.id == upload_id)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()  # SQLite's BEGIN IMMEDIATE serializes already
        row = connection.execute(query).first()
        if row is None:
            raise NotFound(f"No such Upload object: {clip(upload_id)}", param="upload_id",
                           code="upload_not_found")
        upload = _upload(row)
        if upload.status_at(at) is not UploadStatus.PENDING:
            raise _upload_conflict(upload, at, doing)
        return upload

    def add_upload_part(self, part: UploadPart, *, at: int, max_total: int) -> None:
        parts = schema.upload_parts
        with self.engine.begin() as connection:
            upload = self._pending_upload(connection, part.upload_id, at, "parts can be added")
            stored = connection.execute(select(func.coalesce(func.sum(parts.c.bytes), 0))
                                        .where(parts.c.upload_id == part.upload_id)).scalar_one()
            if int(stored) + part.bytes > max_total:
                raise InvalidRequest(
                    f"Upload {upload.id} holds {int(stored)} bytes of parts; this part's "
                    f"{part.bytes} bytes would take it past the {max_total} bytes an upload "
                    "may hold.", param="data", code="upload_too_large")
            connection.execute(insert(parts).values(
                id=part.id, upload_id=part.upload_id, created_at=part.created_at,
                bytes=part.bytes))

    def upload_parts(self, upload_id: str) -> list[UploadPart]:
        where = {"upload_id": upload_id}
        query = _select(schema.upload_parts, tuple(where), order=("id",))
        return [_upload_part(row) for row in self._read(query, where)]

    def _finish_upload(self, connection: Connection, upload_id: str, status: UploadStatus,
                       **values: Any) -> StoredUpload:
        table = schema.uploads
        connection.execute(update(table).where(table.c.id == upload_id)
                           .values(status=status.value, **values))
        connection.execute(delete(schema.upload_parts)
                           .where(schema.upload_parts.c.upload_id == upload_id))
        return _upload(connection.execute(select(table).where(table.c.id == upload_id)).one())

    def complete_upload(self, upload_id: str, file: StoredFile, *, at: int) -> StoredUpload:
        with self.engine.begin() as connection:
            self._pending_upload(connection, upload_id, at, "it can be completed")
            connection.execute(insert(schema.files).values(**_file_values(file)))
            return self._finish_upload(connection, upload_id, UploadStatus.COMPLETED,
                                       file_id=file.id)

    def cancel_upload(self, upload_id: str, *, at: int) -> StoredUpload:
        with self.engine.begin() as connection:
            self._pending_upload(connection, upload_id, at, "it can be cancelled")
            return self._finish_upload(connection, upload_id, UploadStatus.CANCELLED)

    def expire_uploads(self, at: int) -> int:
        table = schema.uploads
        with self.engine.begin() as connection:
            expired = list(connection.execute(select(table.c.id).where(
                table.c.status == UploadStatus.PENDING.value,
                table.c.expires_at <= at)).scalars())
            for upload_id in expired:
                self._finish_upload(connection, upload_id, UploadStatus.EXPIRED)
        return len(expired)

    def pending_upload_ids(self, upload_ids: Sequence[str], *, at: int) -> set[str]:
        table = schema.uploads
        pending: set[str] = set()
        with self.engine.begin() as connection:
            for start in range(0, len(upload_ids), 500):  # under every driver's parameter limit
                chunk = list(upload_ids[start:start + 500])
                pending.update(connection.execute(select(table.c.id).where(
                    table.c.id.in_(chunk), table.c.status == UploadStatus.PENDING.value,
                    table.c.expires_at > at)).scalars())
        return pending
