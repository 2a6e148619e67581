"""The files use cases (``/v1/files``): upload, read, list, download and delete.

Messages quote ids and names the client sent with clip(): they may be megabytes long.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from tunegate import ids
from tunegate.api.accepted_files import check_contents, new_file
from tunegate.domain.files import EVALS, FINE_TUNE, FileStorage, StoredFile, clean_filename
from tunegate.domain.jobs import now
from tunegate.errors import Conflict, InvalidRequest, NotFound, clip
from tunegate.settings import Settings
from tunegate.store.base import Page, Store


@dataclass(frozen=True)
class Upload:
    """A file as received: its name, a readable body, and the form fields."""

    filename: str
    body: IO[bytes]
    purpose: str
    expires_after_seconds: int | None = None


@dataclass(frozen=True)
class InputRule:
    """What a file named as another object's input must be: its purpose, said as ``needs``
    when it is another, and what it is used for (``use``), said when it has expired."""

    purpose: str
    needs: str
    use: str


TRAINING_INPUT = InputRule(FINE_TUNE, "fine-tuning files need purpose 'fine-tune'.", "train on")
EVAL_INPUT = InputRule(EVALS, "eval data needs purpose 'evals'.", "evaluate with")


def input_file(store: Store, project_id: str, file_id: str, param: str, label: str,
               rule: InputRule) -> StoredFile:
    """The one rule for a file a new job or eval run reads: the project's, not expired (a
    file that expired is refused even before the sweep removes it), of the rule's purpose.
    ``label`` opens each message; ``param`` is the field the 400 names."""
    stored = store.get_file(project_id, file_id)
    if stored is None:
        raise InvalidRequest(f"{label}: no such file {clip(file_id)}", param=param,
                             code="file_not_found")
    if stored.expired(now()):
        raise InvalidRequest(
            f"{label}: {file_id} expired at {stored.expires_at} (its expires_after); "
            f"upload it again to {rule.use} it.", param=param, code="file_expired")
    if stored.purpose != rule.purpose:
        raise InvalidRequest(
            f"{label}: {file_id} was uploaded with purpose '{stored.purpose}'; {rule.needs}",
            param=param, code="invalid_file_purpose")
    return stored


class Files:
    def __init__(self, settings: Settings, store: Store, storage: FileStorage):
        self.settings = settings
        self.store = store
        self.storage = storage

    def upload(self, project_id: str, upload: Upload) -> StoredFile:
        """Store the bytes, check JSONL for fine-tune files, then make the file visible."""
        file_id = ids.new_id(ids.FILE)  # the name on disk: never anything the client sent
        size = self.storage.write(file_id, upload.body)
        try:
            check_contents(self.storage.path(file_id), upload.purpose, self.settings,
                           param="file")
            stored = new_file(file_id, project_id, size=size,
                              filename=clean_filename(upload.filename), purpose=upload.purpose,
                              expires_after_seconds=upload.expires_after_seconds)
            self.store.add_file(stored)
        except BaseException:
            self.storage.delete(file_id)
            raise
        return stored

    def get(self, project_id: str | None, file_id: str) -> StoredFile:
        stored = self.store.get_file(project_id, file_id)
        if stored is None or stored.expired(now()):
            raise NotFound(f"No such File object: {clip(file_id)}", param="file_id",
                           code="file_not_found")
        return stored

    def list(self, project_id: str | None, *, purpose: str | None, after: str | None,
                   limit: int, order: str) -> Page[StoredFile]:
        # Expired files are hidden here and deleted by the worker's sweep: a read deletes nothing.
        return self.store.list_files(project_id, purpose=purpose, after=after, limit=limit,
                                     ascending=order == "asc", at=now())

    def content(self, project_id: str | None, file_id: str) -> tuple[StoredFile, Iterator[bytes]]:
        stored = self.get(project_id, file_id)
        return stored, self.storage.read_chunks(file_id)

    def delete(self, project_id: str | None, file_id: str) -> str:
        stored = self.get(project_id, file_id)
        # The file's own project (an admin's project_id is None: every project).
        users = self.store.unfinished_jobs_using(stored.project_id, file_id=file_id)
        if users:
            raise Conflict(
                f"File {file_id} is used by fine-tuning job {users[0]}, which has not finished; "
                "cancel the job or wait for it to end before deleting the file.",
                param="file_id", code="file_in_use",
            )
        self.store.delete_file(project_id, file_id)
        self.storage.delete(file_id)
        return file_id
