"""The SQL store's uploads (a file sent in parts): parts, completion, cancellation, expiry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from tunegate.domain.files import StoredFile
from tunegate.domain.uploads import StoredUpload, UploadPart, UploadStatus
from tunegate.errors import Conflict, InvalidRequest, NotFound, clip
from tunegate.store import schema
from tunegate.store.queries.common import SqlQueries, project_where, select_by
from tunegate.store.rows import as_upload, as_upload_part, file_values


def _upload_conflict(upload: StoredUpload, at: int, doing: str) -> Conflict:
    status = upload.status_at(at).value
    return Conflict(f"Upload {upload.id} is {status}: {doing} only while it is pending.",
                    param="upload_id", code="invalid_upload_status")


class UploadQueries(SqlQueries):
    """Uploads and their parts: ``Store``'s upload methods."""

    def add_upload(self, upload: StoredUpload) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.uploads).values(
                id=upload.id, project_id=upload.project_id, created_at=upload.created_at,
                expires_at=upload.expires_at, filename=upload.filename, purpose=upload.purpose,
                bytes=upload.bytes, mime_type=upload.mime_type, status=upload.status.value,
                file_expires_after=upload.file_expires_after, file_id=upload.file_id))

    def get_upload(self, project_id: str | None, upload_id: str) -> StoredUpload | None:
        where = {"id": upload_id, **project_where(project_id)}
        rows = self._read(select_by(schema.uploads, tuple(where)), where)
        return as_upload(rows[0]) if rows else None

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
        upload = as_upload(row)
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
        query = select_by(schema.upload_parts, tuple(where), order=("id",))
        return [as_upload_part(row) for row in self._read(query, where)]

    def _finish_upload(self, connection: Connection, upload_id: str, status: UploadStatus,
                       **values: Any) -> StoredUpload:
        table = schema.uploads
        connection.execute(update(table).where(table.c.id == upload_id)
                           .values(status=status.value, **values))
        connection.execute(delete(schema.upload_parts)
                           .where(schema.upload_parts.c.upload_id == upload_id))
        return as_upload(connection.execute(select(table).where(table.c.id == upload_id)).one())

    def complete_upload(self, upload_id: str, file: StoredFile, *, at: int) -> StoredUpload:
        with self.engine.begin() as connection:
            self._pending_upload(connection, upload_id, at, "it can be completed")
            connection.execute(insert(schema.files).values(**file_values(file)))
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
