"""Uploads (OpenAI's Uploads API): one file sent as many parts, and the parts' bytes on disk.

An upload is created ``pending`` for the number of bytes the client declares and expires an hour
later. Each part (at most ``MAX_PART_BYTES``) is stored as ``uploads/<upload-id>/<part-id>``,
written the way ``FileStorage`` writes a file (under a partial name, locked by its writer,
renamed when complete), before its row is committed. Completing the upload joins the parts the
client names, in the order it names them, into one new file (hashing it on the way, for the
optional md5), and moves that file into ``files/`` just before its row commits.

Parts live in a folder of their own, never in ``files/``: the janitor's rule for bytes without a
row there (tunegate.worker.janitor) must not see them. The folder goes when its upload is
completed or cancelled, and the janitor removes the folders of expired uploads and of uploads
that are no longer pending.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tunegate.domain.files import FileStorage, StoredFile

MiB = 1024 * 1024
GiB = 1024 * MiB
# OpenAI's limits: "Each Part can be at most 64 MB, and you can add Parts until you hit the
# Upload maximum of 8 GB"; an Upload "expires after an hour after you create it".
MAX_PART_BYTES = 64 * MiB
MAX_UPLOAD_BYTES = 8 * GiB
UPLOAD_LIFETIME_SECONDS = 3600
_FOLDER_NAME = re.compile(r"upload_[A-Za-z0-9]{1,57}")


class UploadStatus(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class StoredUpload:
    """An upload as stored. ``status`` is the stored one: a ``pending`` upload past its
    ``expires_at`` is shown (and treated) as ``expired`` before the janitor records it so."""

    id: str
    project_id: str
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    status: UploadStatus = UploadStatus.PENDING
    # The ``expires_after.seconds`` of the file the upload becomes (None: it never expires).
    file_expires_after: int | None = None
    file_id: str | None = None  # set when completed

    def status_at(self, at: int) -> UploadStatus:
        if self.status is UploadStatus.PENDING and self.expires_at <= at:
            return UploadStatus.EXPIRED
        return self.status

    def to_api(self, at: int, file: StoredFile | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "upload",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status_at(at).value,
            "file": file.to_api() if file is not None else None,
        }


@dataclass(frozen=True)
class UploadPart:
    id: str
    upload_id: str
    created_at: int
    bytes: int

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "object": "upload.part", "created_at": self.created_at,
                "upload_id": self.upload_id}


class _Joined:
    """A readable stream of several files one after another, hashed (md5) as it is read."""

    def __init__(self, paths: Sequence[Path]):
        self._paths: Iterator[Path] = iter(paths)
        self._current: IO[bytes] | None = None
        self.md5 = hashlib.md5(usedforsecurity=False)

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._current is None:
                path = next(self._paths, None)
                if path is None:
                    return b""
                self._current = path.open("rb")
            chunk = self._current.read(size)
            if chunk:
                self.md5.update(chunk)
                return chunk
            self.close()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


@dataclass(frozen=True)
class Joined:
    """The parts joined into one file, still in the upload's folder."""

    path: Path
    bytes: int
    md5: str  # lower-case hex


class UploadStorage:
    """The data folder's ``uploads/``: one folder per upload that has parts."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, upload_id: str) -> Path:
        # Callers look ids up in the store first; this makes sure no other text becomes a path.
        if not _FOLDER_NAME.fullmatch(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return self.root / upload_id

    def _parts(self, upload_id: str) -> FileStorage:
        return FileStorage(self.folder(upload_id))

    def write_part(self, upload_id: str, part_id: str, source: IO[bytes]) -> int:
        """Store one part's bytes (removed again if the write fails); their count."""
        return self._parts(upload_id).write(part_id, source)

    def delete_part(self, upload_id: str, part_id: str) -> None:
        with suppress(FileNotFoundError):
            self._parts(upload_id).delete(part_id)

    def join(self, upload_id: str, part_ids: Sequence[str], name: str) -> Joined:
        """Write the parts, in this order, to one file ``name`` in the upload's folder."""
        parts = self._parts(upload_id)
        reader = _Joined([parts.path(part_id) for part_id in part_ids])
        try:
            size = parts.write(name, reader)  # type: ignore[arg-type]  # it only needs read()
        finally:
            reader.close()
        return Joined(parts.path(name), size, reader.md5.hexdigest())

    def remove(self, upload_id: str) -> None:
        """Delete the upload's folder and every part in it (nothing if there is none)."""
        shutil.rmtree(self.folder(upload_id), ignore_errors=True)

    def upload_ids(self) -> list[str]:
        """The uploads that have a folder here."""
        return [entry.name for entry in os.scandir(self.root)
                if entry.is_dir() and _FOLDER_NAME.fullmatch(entry.name)]

    def remove_abandoned_partials(self, older_than: float) -> int:
        """Delete parts whose writer died, in every upload's folder; return how many."""
        removed = 0
        for upload_id in self.upload_ids():
            with suppress(FileNotFoundError):  # the folder went meanwhile
                removed += FileStorage(self.folder(upload_id)).remove_abandoned_partials(
                    older_than)
        return removed
