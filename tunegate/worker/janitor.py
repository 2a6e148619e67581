"""The worker's sweep of the data folder: nothing stays on disk that no row owns.

Runs when a worker starts and then every ``SWEEP_SECONDS``. What it removes, and why it is safe:

- files past their ``expires_at`` that no unfinished job uses (row and bytes; reads only hide
  them, they never delete; a job's file waits for the job to end);
- partial files whose writer died (``FileStorage`` writers hold a lock on them), after
  ``PARTIAL_GRACE_SECONDS``: uploads' bytes in ``files/`` and upload parts in ``uploads/``;
- uploads (the Uploads API) past their ``expires_at``, recorded ``expired``, and the parts folder
  (``uploads/<upload-id>/``) of every upload that is not pending any more, or has no row;
- complete files without a row, older than ``ORPHAN_GRACE_SECONDS`` (an upload renames its bytes
  into place and commits the row right after; one killed in between leaves the bytes alone).
  Only ``files/`` is read for this: parts have their own folder, whose rule is the one above;
- job folders whose job has finished and that no worker holds, settled by the status's rule
  (``ON_ENTRY``: failed and cancelled ones go, a succeeded one keeps its model files), and
  folders of jobs that do not exist.

Last, it makes the store's disk reserve again if a full disk used it up and there is room now
(tunegate.store.reserve).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

from tunegate.domain import work_dirs
from tunegate.domain.jobs import now
from tunegate.worker.host import Host

log = logging.getLogger("tunegate.janitor")

SWEEP_SECONDS = 60.0
# An upload locks its part the instant it creates it; the grace only covers that instant.
PARTIAL_GRACE_SECONDS = 10.0
# Bytes are renamed into place just before their row commits, which may wait on a busy store.
ORPHAN_GRACE_SECONDS = 60.0


@dataclass
class Swept:
    expired_files: int = 0
    abandoned_partials: int = 0
    expired_uploads: int = 0
    upload_folders: int = 0
    orphan_files: int = 0
    job_folders: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


class Janitor:
    def __init__(self, services: Host):
        self.store = services.store
        self.storage = services.storage
        self.upload_storage = services.upload_storage
        self.settings = services.settings

    def sweep(self) -> Swept:
        swept = Swept(expired_files=self.delete_expired_files(),
                      abandoned_partials=(
                          self.storage.remove_abandoned_partials(PARTIAL_GRACE_SECONDS)
                          + self.upload_storage.remove_abandoned_partials(PARTIAL_GRACE_SECONDS)),
                      expired_uploads=self.store.expire_uploads(now()),
                      upload_folders=self._remove_finished_upload_folders(),
                      orphan_files=self._delete_orphan_files(),
                      job_folders=self._settle_job_folders())
        self.store.restore_reserve()  # after the removals above, which may have made the room
        if swept:
            log.info("swept the data folder: %s", swept)
        return swept

    def delete_expired_files(self) -> int:
        """Expired files that no unfinished job uses: a job may train, pause and resume past
        its file's expiry (no new job can start on an expired file), and its file goes with
        the first sweep after the job ends. The same rule as ``DELETE /v1/files`` (409)."""
        deleted = 0
        for stored in self.store.expired_files(now()):
            if self.store.unfinished_jobs_using(stored.project_id, file_id=stored.id):
                continue
            self.store.delete_file(stored.project_id, stored.id)
            self.storage.delete(stored.id)
            deleted += 1
        return deleted

    def _remove_finished_upload_folders(self) -> int:
        """Parts of uploads that were completed, cancelled or expired (the API removes them
        itself when it completes or cancels one; this catches a process that died first), and
        folders without an upload row."""
        on_disk = self.upload_storage.upload_ids()
        finished = set(on_disk) - self.store.pending_upload_ids(on_disk, at=now())
        for upload_id in finished:
            self.upload_storage.remove(upload_id)
        return len(finished)

    def _delete_orphan_files(self) -> int:
        on_disk = self.storage.stored_ids(older_than=ORPHAN_GRACE_SECONDS)
        orphans = set(on_disk) - self.store.known_file_ids(on_disk)
        for file_id in orphans:
            self.storage.delete(file_id)
        return len(orphans)

    def _settle_job_folders(self) -> int:
        root = self.settings.data_dir / "jobs"
        if not root.is_dir():
            return 0
        held = {owned.job.id for owned in self.store.owned_jobs()}
        settled = 0
        for entry in os.scandir(root):
            if not entry.is_dir() or entry.name in held:
                continue
            job = self.store.get_job(entry.name)
            if job is None:
                shutil.rmtree(entry.path, ignore_errors=True)
                settled += 1
            elif job.status.is_terminal:
                before = set(os.listdir(entry.path))
                work_dirs.settle(self.settings.job_dir(job.id), job.status)
                settled += not os.path.isdir(entry.path) or set(os.listdir(entry.path)) != before
        return settled
