"""Uploaded files: the domain object and the bytes on disk.

Bytes are written under a temporary name and renamed into place only when complete, and the
store row is committed after the rename, so a partial upload is never visible. A writer holds
an exclusive ``flock`` on its partial file, so a sweeper can tell a live upload from one whose
process died (a kill -9 leaves the partial behind; nobody holds its lock any more). A write that
fails (a full disk: ``OSError`` ENOSPC, answered 507 by the API) removes its partial file.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CHUNK = 1024 * 1024

# Purposes accepted on upload: OpenAI's, less ``evals``, which the OpenAI SDKs' file object
# lacks (a strict client could not list files once one was stored; openapi.yaml refuses it).
# Outputs (``*-results``, ``*_output``) are ours to create.
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data")
# Purposes an older tunegate stored that the SDKs cannot read back, and what is shown instead.
SHOWN_PURPOSE = {"evals": "user_data"}
FINE_TUNE = "fine-tune"
FINE_TUNE_RESULTS = "fine-tune-results"
# A stored name is shown back (listings, Content-Disposition), never used as a path; the cap
# keeps it to what a file system would take when a client saves it.
MAX_FILENAME_BYTES = 255
DEFAULT_FILENAME = "upload"
# What the data folder's names look like: ids we made (tunegate.ids), nothing else.
_STORAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PARTIAL_PREFIX = ".partial-"


def results_file_content(csv: bytes) -> bytes:
    """What a job's results file holds: its CSV (``step,train_loss,...``) base64-encoded, as
    api.openai.com serves ``fine-tune-results`` files. Code written against OpenAI decodes it
    (``base64.b64decode(client.files.content(id).read())``); plain CSV would fail there."""
    return base64.b64encode(csv)


def clean_filename(name: str) -> str:
    """The client's file name made safe to store and show: the last path component only, no
    control or invisible format characters (NUL, newlines, bidi overrides), at most 255 UTF-8
    bytes (the extension kept), and never empty, "." or "..". Readable names pass unchanged."""
    name = unicodedata.normalize("NFC", re.split(r"[/\\]", name)[-1])
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cf"))
    name = name.strip()
    if name in ("", ".", ".."):
        return DEFAULT_FILENAME
    stem, dot, extension = name.rpartition(".")
    if not dot or len(extension.encode()) > 16:
        stem, dot, extension = name, "", ""
    room = MAX_FILENAME_BYTES - len((dot + extension).encode())
    stem = stem.encode()[:room].decode(errors="ignore")
    return stem + dot + extension


@dataclass(frozen=True)
class StoredFile:
    id: str
    project_id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    expires_at: int | None = None
    # OpenAI deprecated these but still requires them; uploads are "processed" once stored.
    status: str = "processed"
    status_details: str | None = None

    def expired(self, at: float) -> bool:
        """Past its ``expires_at``: hidden from every read and refused to new jobs. The bytes
        stay while an unfinished job uses them (``Janitor.delete_expired_files``)."""
        return self.expires_at is not None and self.expires_at <= at

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": SHOWN_PURPOSE.get(self.purpose, self.purpose),
            "status": self.status,
            "status_details": self.status_details,
        }


class FileStorage:
    """The data folder's ``files/``: one plain file per file id."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path:
        # Callers look ids up in the store first; this makes sure no other text becomes a path.
        if not _STORAGE_NAME.fullmatch(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.root / file_id

    def write(self, file_id: str, source: IO[bytes]) -> int:
        """Copy ``source`` to the file's place in chunks; return the byte count."""
        partial = self.root / f"{PARTIAL_PREFIX}{file_id}"
        try:
            with partial.open("wb") as target:
                fcntl.flock(target, fcntl.LOCK_EX)  # released when the file closes (or we die)
                shutil.copyfileobj(source, target, CHUNK)
                size = target.tell()
                os.replace(partial, self.path(file_id))
        finally:
            partial.unlink(missing_ok=True)
        return size

    def adopt(self, file_id: str, source: Path) -> None:
        """Move a complete file written elsewhere on this disk (a joined upload) into place as
        ``file_id``. Its time is set to now first: the row commits right after, and the
        janitor leaves young row-less bytes alone."""
        os.utime(source)
        os.replace(source, self.path(file_id))

    def stored_ids(self, older_than: float) -> list[str]:
        """Ids of complete files last modified more than ``older_than`` seconds ago."""
        cutoff = time.time() - older_than
        return [entry.name for entry in os.scandir(self.root)
                if entry.is_file() and _STORAGE_NAME.fullmatch(entry.name)
                and entry.stat().st_mtime < cutoff]

    def remove_abandoned_partials(self, older_than: float) -> int:
        """Delete partial files no writer holds (their upload died); return how many. The age
        leaves alone a partial created an instant ago whose writer has not locked it yet."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.scandir(self.root):
            if not entry.name.startswith(PARTIAL_PREFIX) or entry.stat().st_mtime >= cutoff:
                continue
            with contextlib.suppress(FileNotFoundError), open(entry.path, "rb") as partial:
                try:
                    fcntl.flock(partial, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live upload
                os.unlink(entry.path)
                removed += 1
        return removed

    def free_bytes(self) -> int:
        """Room left on the disk under the files folder (for unprivileged writers)."""
        return shutil.disk_usage(self.root).free

    def read_chunks(self, file_id: str) -> Iterator[bytes]:
        with self.path(file_id).open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk

    def delete(self, file_id: str) -> None:
        self.path(file_id).unlink(missing_ok=True)
