"""Use cases of the Uploads API: create an upload, add parts, complete it into a file, cancel it.

OpenAI's rules (openai/openai-openapi ``openapi.yaml``, ``/uploads`` paths and the ``Upload``,
``UploadPart``, ``CreateUploadRequest`` and ``CompleteUploadRequest`` schemas): an upload holds
at most 8 GB, each part at most 64 MB, it expires an hour after it was created, completing it
takes the part ids in the order the file is made of, the parts must add up to the ``bytes`` the
upload was created with, and an optional ``md5`` of the whole is checked.

Objects of other projects answer exactly as missing ones (404). Whatever a failed completion
finds wrong (an unknown part, a wrong total, a wrong md5, a ``fine-tune`` file that is not
JSONL), the upload stays pending with its parts, so the client can complete it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import IO, Any

from tunegate import ids
from tunegate.api.accepted_files import check_contents, new_file
from tunegate.domain.files import UPLOAD_PURPOSES, FileStorage, clean_filename
from tunegate.domain.jobs import now
from tunegate.domain.uploads import (
    MAX_PART_BYTES,
    MAX_UPLOAD_BYTES,
    UPLOAD_LIFETIME_SECONDS,
    StoredUpload,
    UploadPart,
    UploadStatus,
    UploadStorage,
)
from tunegate.errors import (
    Conflict,
    InsufficientStorage,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    clip,
)
from tunegate.settings import Settings
from tunegate.store.base import Store


class Uploads:
    def __init__(self, settings: Settings, store: Store, storage: FileStorage,
                 parts: UploadStorage):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.parts = parts

    def _get(self, project_id: str | None, upload_id: str) -> StoredUpload:
        upload = self.store.get_upload(project_id, upload_id)
        if upload is None:
            raise NotFound(f"No such Upload object: {clip(upload_id)}", param="upload_id",
                           code="upload_not_found")
        return upload

    @staticmethod
    def _require_pending(upload: StoredUpload, at: int, doing: str) -> None:
        status = upload.status_at(at)
        if status is not UploadStatus.PENDING:
            raise Conflict(f"Upload {upload.id} is {status.value}: {doing} only while it is "
                           "pending.", param="upload_id", code="invalid_upload_status")

    def create(self, project_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A new ``pending`` upload of ``bytes`` bytes (nothing is stored on disk yet)."""
        if body["purpose"] not in UPLOAD_PURPOSES:
            raise InvalidRequest(f"Invalid purpose {clip(str(body['purpose']))}; use one of "
                                 f"{', '.join(UPLOAD_PURPOSES)}.", param="purpose",
                                 code="invalid_purpose")
        size = body["bytes"]
        if not 0 <= size <= MAX_UPLOAD_BYTES:
            raise InvalidRequest(f"An upload holds 0 to {MAX_UPLOAD_BYTES} bytes; {size} "
                                 "were declared.", param="bytes", code="invalid_upload_size")
        expires_after = body.get("expires_after")
        created = now()
        upload = StoredUpload(
            id=ids.new_id(ids.UPLOAD), project_id=project_id, created_at=created,
            expires_at=created + UPLOAD_LIFETIME_SECONDS,
            filename=clean_filename(body["filename"]), purpose=body["purpose"], bytes=size,
            mime_type=body["mime_type"],
            file_expires_after=expires_after["seconds"] if expires_after else None,
        )
        self.store.add_upload(upload)
        return upload.to_api(created)

    def add_part(self, project_id: str | None, upload_id: str, data: IO[bytes],
                 size: int) -> dict[str, Any]:
        """Store ``size`` bytes read from ``data`` as a new part of a pending upload."""
        upload = self._get(project_id, upload_id)
        self._require_pending(upload, now(), "parts can be added")
        if size > MAX_PART_BYTES:
            raise PayloadTooLarge(f"A part holds at most {MAX_PART_BYTES} bytes (64 MiB); this "
                                  f"one has {size}. Split the file into smaller parts.",
                                  param="data", code="part_too_large")
        part_id = ids.new_id(ids.UPLOAD_PART)
        try:
            written = self.parts.write_part(upload.id, part_id, data)
        except FileNotFoundError:
            # Its folder went while the part was written: the upload ended meanwhile.
            self._require_pending(self._get(project_id, upload_id), now(), "parts can be added")
            raise
        part = UploadPart(id=part_id, upload_id=upload.id, created_at=now(), bytes=written)
        try:
            self.store.add_upload_part(part, at=part.created_at, max_total=MAX_UPLOAD_BYTES)
        except BaseException:
            self.parts.delete_part(upload.id, part_id)
            raise
        return part.to_api()

    def _listed_parts(self, upload: StoredUpload, part_ids: Sequence[str]) -> list[UploadPart]:
        """The parts ``part_ids`` names, in that order, if they make up the whole upload."""
        seen: set[str] = set()
        for part_id in part_ids:
            if part_id in seen:
                raise InvalidRequest(f"Part '{clip(part_id)}' is listed twice in part_ids.",
                                     param="part_ids", code="duplicate_part")
            seen.add(part_id)
        parts = {part.id: part for part in self.store.upload_parts(upload.id)}
        unknown = [part_id for part_id in part_ids if part_id not in parts]
        if unknown:
            raise InvalidRequest(f"Part '{clip(unknown[0])}' is not a part of upload {upload.id}.",
                                 param="part_ids", code="unknown_part")
        listed = [parts[part_id] for part_id in part_ids]
        total = sum(part.bytes for part in listed)
        if total != upload.bytes:
            raise InvalidRequest(
                f"The {len(listed)} parts listed hold {total} bytes, but upload {upload.id} was "
                f"created for {upload.bytes} bytes: list every part of the file, in order.",
                param="part_ids", code="upload_bytes_mismatch")
        return listed

    def complete(self, project_id: str | None, upload_id: str, part_ids: Sequence[str],
                 md5: str | None = None) -> dict[str, Any]:
        """Join the listed parts, in order, into a new file of the upload's project and purpose;
        the upload becomes ``completed`` with that file."""
        upload = self._get(project_id, upload_id)
        self._require_pending(upload, now(), "it can be completed")
        listed = self._listed_parts(upload, part_ids)
        free = self.storage.free_bytes()
        if upload.bytes > free:
            raise InsufficientStorage(
                f"The server's data folder is full: this upload's file needs {upload.bytes} "
                f"bytes and the disk has only {free} bytes free. Free space in the data folder "
                "(TUNEGATE_DATA) and complete it again; its parts are kept until it expires.")
        file_id = ids.new_id(ids.FILE)
        joined = self.parts.join(upload.id, [part.id for part in listed], file_id)
        try:
            if md5 is not None and joined.md5 != md5.lower():
                raise InvalidRequest(
                    f"The parts listed have md5 {joined.md5}, not {clip(md5)}: a part is "
                    "missing, changed or out of order.", param="md5", code="md5_mismatch")
            check_contents(joined.path, upload.purpose, self.settings, param="part_ids")
            stored = new_file(file_id, upload.project_id, size=joined.bytes,
                              filename=upload.filename, purpose=upload.purpose,
                              expires_after_seconds=upload.file_expires_after)
            created = stored.created_at
            self.storage.adopt(file_id, joined.path)
        except BaseException:
            joined.path.unlink(missing_ok=True)
            raise
        try:
            completed = self.store.complete_upload(upload.id, stored, at=created)
        except BaseException:
            self.storage.delete(file_id)
            raise
        self.parts.remove(upload.id)
        return completed.to_api(created, file=stored)

    def cancel(self, project_id: str | None, upload_id: str) -> dict[str, Any]:
        """A pending upload becomes ``cancelled``; its parts are deleted."""
        upload = self._get(project_id, upload_id)
        at = now()
        cancelled = self.store.cancel_upload(upload.id, at=at)
        self.parts.remove(upload.id)
        return cancelled.to_api(at)
