"""Moving a job as a worker: one transition of the store in this worker's name, with the events
that say why, and the files and models it publishes. The user may have got there first (a
cancel, a pause): then nothing moves, the answer is ``None``, and files written for the move go."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tunegate.domain.files import FileStorage, StoredFile
from tunegate.domain.jobs import EventLevel, FineTuningJob, JobStatus, job_event
from tunegate.domain.models import FineTunedModel
from tunegate.errors import Conflict
from tunegate.store.base import Store

log = logging.getLogger("tunegate.worker")


def move_as_worker(store: Store, storage: FileStorage, worker_id: str, job: FineTuningJob,
                   target: JobStatus, message: str, *, level: EventLevel = EventLevel.INFO,
                   changes: Mapping[str, Any] | None = None, extra_events: Sequence[str] = (),
                   new_files: Sequence[StoredFile] = (),
                   new_models: Sequence[FineTunedModel] = ()) -> FineTuningJob | None:
    """The job moved to ``target`` (``message`` its last event, after ``extra_events``); ``None``
    when the store refuses the move (the user got there first)."""
    events = [job_event(job.id, text) for text in extra_events]
    events.append(job_event(job.id, message, level))
    try:
        return store.transition(job.id, target, worker_id=worker_id, events=events,
                                changes=changes, new_files=new_files, new_models=new_models)
    except Conflict as exc:
        log.info("job %s not moved to %s: %s", job.id, target.value, exc.message)
        for file in new_files:
            storage.delete(file.id)
        return None
