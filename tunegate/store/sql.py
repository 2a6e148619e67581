"""``Store`` on SQLAlchemy Core: SQLite (the embedded default) or PostgreSQL.

SQLite runs in WAL mode and every writing transaction starts with ``BEGIN IMMEDIATE``, so a
compare-and-set or a claim is serialized across processes (the API and its workers) without
lost updates; PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``.

Reads of one statement (``_read``) take no lock: on SQLite they go through a second engine
whose connections never issue ``BEGIN`` (in WAL mode a statement sees the last commit and never
waits for a writer), so the API's listings queue neither behind each other nor behind a
worker's writes. The statements of the frequent reads are built once (``select_by``) with bound
parameters, which spares SQLAlchemy rebuilding and re-keying them on every request.

Where each part lives: connecting and each dialect's settings in ``tunegate.store.engine``,
rows <-> domain objects in ``tunegate.store.rows``, the queries of each aggregate in
``tunegate.store.queries`` (whose classes make up ``SqlStore``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from tunegate.store import schema
from tunegate.store.engine import create_engines
from tunegate.store.migrations.migrate import migrate
from tunegate.store.queries.evals import SqlEvals
from tunegate.store.queries.events import EventQueries
from tunegate.store.queries.files import FileQueries
from tunegate.store.queries.jobs import JobQueries
from tunegate.store.queries.models import ModelQueries
from tunegate.store.queries.stored_completions import StoredCompletionQueries
from tunegate.store.queries.uploads import UploadQueries
from tunegate.store.queries.webhooks import WebhookQueries
from tunegate.store.reserve import DiskReserve


def open_store(url: str) -> SqlStore:
    """Connect, apply migrations, and return a ready store."""
    engine, reads, reserve = create_engines(url)
    migrate(engine)
    return SqlStore(engine, reads, reserve)


class SqlStore(FileQueries, JobQueries, EventQueries, ModelQueries, UploadQueries,
               WebhookQueries, StoredCompletionQueries):
    """The SQL implementation of ``tunegate.store.base.Store``."""

    def __init__(self, engine: Engine, reads: Engine | None = None,
                 reserve: DiskReserve | None = None):
        super().__init__(engine, reads, reserve)
        # The Evals API's tables, queried by a module of their own.
        self.evals = SqlEvals(engine, self._reads)

    def restore_reserve(self) -> bool:
        if self.reserve is None:
            return True
        return self.reserve.restore()

    def identity(self) -> str:
        with self.engine.begin() as connection:
            return str(connection.execute(select(schema.store_identity.c.id)).scalar_one())
