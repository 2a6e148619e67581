"""The store's stored chat completions (``store: true``): kept, listed by project with OpenAI's
filters (model, metadata pairs), read, their metadata replaced, deleted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row

from tunegate.domain.stored_completions import StoredCompletion
from tunegate.store import schema
from tunegate.store.base import Page
from tunegate.store.queries.common import SqlQueries, in_project, project_where, select_by


def as_stored_completion(row: Row[Any]) -> StoredCompletion:
    return StoredCompletion(id=row.id, project_id=row.project_id, created_at=row.created_at,
                            model=row.model, metadata=dict(row.metadata or {}),
                            messages=list(row.messages), tools=row.tools,
                            completion=dict(row.completion))


class StoredCompletionQueries(SqlQueries):
    """``Store``'s stored chat completions."""

    def add_stored_completion(self, stored: StoredCompletion) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.stored_completions).values(
                id=stored.id, project_id=stored.project_id, created_at=stored.created_at,
                model=stored.model, metadata=stored.metadata, messages=stored.messages,
                tools=stored.tools, completion=stored.completion))

    def get_stored_completion(self, project_id: str | None,
                              completion_id: str) -> StoredCompletion | None:
        where = {"id": completion_id, **project_where(project_id)}
        rows = self._read(select_by(schema.stored_completions, tuple(where)), where)
        return as_stored_completion(rows[0]) if rows else None

    def list_stored_completions(self, project_id: str | None, *, model: str | None,
                                metadata: Mapping[str, str] | None, after: str | None,
                                limit: int, ascending: bool) -> Page[StoredCompletion]:
        table = schema.stored_completions
        extra = [self._metadata_is(table.c.metadata, key, value)
                 for key, value in (metadata or {}).items()]
        if model is not None:
            extra.append(table.c.model == model)
        rows, more = self._page(table, project_where(project_id), after=after, limit=limit,
                                ascending=ascending, extra=extra)
        return Page([as_stored_completion(row) for row in rows], more)

    def set_stored_completion_metadata(self, project_id: str | None, completion_id: str,
                                       metadata: Mapping[str, str]) -> StoredCompletion | None:
        table = schema.stored_completions
        with self.engine.begin() as connection:
            found = connection.execute(update(table).where(
                table.c.id == completion_id, in_project(table, project_id))
                .values(metadata=dict(metadata)))
            if found.rowcount != 1:
                return None
            return as_stored_completion(connection.execute(
                select(table).where(table.c.id == completion_id)).one())

    def delete_stored_completion(self, project_id: str | None, completion_id: str) -> bool:
        table = schema.stored_completions
        with self.engine.begin() as connection:
            found = connection.execute(delete(table).where(
                table.c.id == completion_id, in_project(table, project_id)))
        return found.rowcount == 1
