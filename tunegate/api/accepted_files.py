"""What turns received bytes into a file, the same whichever way they came: in one request
(``POST /v1/files``) or as the joined parts of a completed upload (the Uploads API)."""

from __future__ import annotations

from pathlib import Path

from tunegate.domain.datasets import DatasetError, check_jsonl_upload
from tunegate.domain.files import FINE_TUNE, StoredFile
from tunegate.domain.jobs import now
from tunegate.errors import InvalidRequest
from tunegate.settings import Settings


def check_contents(path: Path, purpose: str, settings: Settings, *, param: str) -> None:
    """A fine-tune file must be JSONL within the line and example limits (400
    ``invalid_file_format`` naming ``param``, the request field that brought it); files of
    other purposes are taken as they are."""
    if purpose != FINE_TUNE:
        return
    try:
        check_jsonl_upload(path, max_line_bytes=settings.max_line_bytes,
                           max_examples=settings.max_examples)
    except DatasetError as exc:
        raise InvalidRequest(f"Invalid file format for purpose 'fine-tune': {exc.message}",
                             param=param, code="invalid_file_format") from None


def new_file(file_id: str, project_id: str, *, size: int, filename: str, purpose: str,
             expires_after_seconds: int | None) -> StoredFile:
    """The file's record, created now, expiring ``expires_after_seconds`` later if given."""
    created = now()
    return StoredFile(id=file_id, project_id=project_id, bytes=size, created_at=created,
                      filename=filename, purpose=purpose,
                      expires_at=created + expires_after_seconds if expires_after_seconds else None)
