"""Connecting to the store's database: the engines for a URL, each dialect's session settings,
full-disk errors translated, and the reader of JSON columns.

SQLite runs in WAL mode and every writing transaction starts with ``BEGIN IMMEDIATE``, so a
compare-and-set or a claim is serialized across processes (the API and its workers) without
lost updates. Its reads of one statement go through a second engine whose connections never
issue ``BEGIN`` (in WAL mode a statement sees the last commit and never waits for a writer).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, ExceptionContext

from tunegate.errors import InsufficientStorage
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


def configure_sqlite(engine: Engine, *, writes: bool = True) -> None:
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


def configure_postgresql(engine: Engine) -> None:
    """PostgreSQL ends any session of ours that sits idle inside a transaction longer than
    ``POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT`` (a dead worker host's), releasing its locks."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET idle_in_transaction_session_timeout = "
                       f"'{POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT}'")
        cursor.close()
        dbapi_connection.commit()  # the driver opened a transaction for the SET


def is_full(driver_error: BaseException) -> bool:
    """Whether a driver's error says the disk (or SQLite's page limit) is full."""
    if getattr(driver_error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return POSTGRES_DISK_FULL in (getattr(driver_error, "sqlstate", None),
                                  getattr(driver_error, "pgcode", None))


def translate_errors(engine: Engine) -> None:
    """A full disk is the operator's to fix, not a bug: it leaves the store as
    ``InsufficientStorage`` (507), whichever statement or commit met it. Raised from here, it
    leaves ``engine.begin()`` like any error, which rolls the transaction back."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if is_full(context.original_exception):
            raise InsufficientStorage() from context.sqlalchemy_exception


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C, behind json.loads


def json_loads(text: str | bytes) -> Any:
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


def create_engines(url: str) -> tuple[Engine, Engine | None, DiskReserve | None]:
    """The engine of ``url`` (configured for its dialect), SQLite's engine of lock-free reads
    (``None`` elsewhere) and the disk reserve of a SQLite file (``None`` elsewhere), made now
    if the disk has room for it (tunegate.store.reserve)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, json_deserializer=json_loads)
    translate_errors(engine)
    reads = reserve = None
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
        reads = create_engine(url, json_deserializer=json_loads)
        translate_errors(reads)  # a read's temporary sort file may meet a full disk too
        configure_sqlite(reads, writes=False)
        if engine.url.database and engine.url.database != ":memory:":
            reserve = DiskReserve(Path(engine.url.database).parent / RESERVE_FILE)
            reserve.restore()
    elif engine.dialect.name == "postgresql":
        # PostgreSQL's disk is the database server's: it keeps its own room.
        configure_postgresql(engine)
    return engine, reads, reserve
