"""The SQL store's files: rows of uploaded and result files, and their expiry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, insert, select

from tunegate.domain.files import StoredFile
from tunegate.store import schema
from tunegate.store.base import Page
from tunegate.store.queries.common import SqlQueries, in_project, project_where, select_by
from tunegate.store.rows import as_file, file_values

_EXPIRED_FILES = select(schema.files).where(schema.files.c.expires_at.is_not(None),
                                            schema.files.c.expires_at <= bindparam("now"))


class FileQueries(SqlQueries):
    """Files: ``tunegate.store.base.Store``'s file methods."""

    def add_file(self, file: StoredFile) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.files).values(**file_values(file)))

    def get_file(self, project_id: str | None, file_id: str) -> StoredFile | None:
        where = {"id": file_id, **project_where(project_id)}
        rows = self._read(select_by(schema.files, tuple(where)), where)
        return as_file(rows[0]) if rows else None

    def list_files(self, project_id: str | None, *, purpose: str | None, after: str | None,
                   limit: int, ascending: bool, at: int | None = None) -> Page[StoredFile]:
        where = {**project_where(project_id), **({} if purpose is None else {"purpose": purpose})}
        rows, more = self._page(schema.files, where, after=after, limit=limit,
                                ascending=ascending, unexpired_at=at)
        return Page([as_file(row) for row in rows], more)

    def delete_file(self, project_id: str | None, file_id: str) -> bool:
        table = schema.files

        def write() -> bool:
            with self.engine.begin() as connection:
                result = connection.execute(delete(table).where(
                    table.c.id == file_id, in_project(table, project_id)))
            return result.rowcount > 0

        return self._keeping_room(write)

    def expired_files(self, now: int) -> list[StoredFile]:
        return [as_file(row) for row in self._read(_EXPIRED_FILES, {"now": now})]

    def known_file_ids(self, file_ids: Sequence[str]) -> set[str]:
        table = schema.files
        known: set[str] = set()
        with self.engine.begin() as connection:
            for start in range(0, len(file_ids), 500):  # under every driver's parameter limit
                chunk = list(file_ids[start:start + 500])
                known.update(connection.execute(
                    select(table.c.id).where(table.c.id.in_(chunk))).scalars())
        return known
