"""The fine-tuning jobs use cases (``/v1/fine_tuning/jobs``): create, read, list, cancel,
pause and resume, and a job's events and checkpoints. Status changes go through
``Store.transition``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunegate import ids
from tunegate.api.evals import ModelCheck
from tunegate.api.event_feed import EventFeed, Follower
from tunegate.api.files import TRAINING_INPUT, input_file
from tunegate.api.job_graders import check_reward_grader
from tunegate.api.models import Models
from tunegate.domain import work_dirs
from tunegate.domain.job_requests import check_metadata, method_from_request, seed_for
from tunegate.domain.jobs import (
    Checkpoint,
    EventLevel,
    FineTuningJob,
    JobEvent,
    JobStatus,
    job_event,
    now,
)
from tunegate.errors import InvalidRequest, NotFound, clip
from tunegate.settings import Settings
from tunegate.store.base import Page, Store


class Jobs:
    def __init__(self, settings: Settings, store: Store, models: Models,
                 live_events: EventFeed, grader_model_check: ModelCheck | None):
        self.settings = settings
        self.store = store
        self.models = models
        self.live_events = live_events
        # Whether a reinforcement grader's model is served (None: an external endpoint's).
        self.grader_model_check = grader_model_check

    def _training_input(self, project_id: str, file_id: str | None, param: str) -> None:
        if file_id is not None:
            input_file(self.store, project_id, file_id, param, f"invalid {param}", TRAINING_INPUT)

    def create(self, project_id: str, body: Mapping[str, Any],
                   organization_id: str | None = None) -> FineTuningJob:
        """Validate the request synchronously, then commit the job and its first event, unless
        the project already has ``max_active_jobs`` waiting or training (429, nothing stored)."""
        request = dict(body)
        method = method_from_request(request)
        check_reward_grader(method, project_id, self.grader_model_check)
        self.models.check_trainable(project_id, request["model"])
        self._training_input(project_id, request["training_file"], "training_file")
        self._training_input(project_id, request.get("validation_file"), "validation_file")
        check_metadata(request.get("metadata"))
        job = FineTuningJob(
            id=ids.new_id(ids.JOB), project_id=project_id, created_at=now(),
            model=request["model"],
            organization_id=organization_id or self.settings.organization_id,
            status=JobStatus.VALIDATING_FILES, training_file=request["training_file"],
            validation_file=request.get("validation_file"), method=method,
            seed=seed_for(request), suffix=request.get("suffix"),
            metadata=request.get("metadata"), integrations=request.get("integrations"),
        )
        self.store.create_job(job, job_event(job.id, f"Created fine-tuning job: {job.id}"),
                              max_active=self.settings.max_active_jobs)
        if job.integrations:
            self.store.add_events([job_event(
                job.id, "Integrations (e.g. Weights & Biases) are not run by tunegate: this "
                "machine reports no metrics outside. They are kept on the job as given.",
                EventLevel.WARN)])
        return job

    def get(self, project_id: str | None, job_id: str) -> FineTuningJob:
        job = self.store.get_job(job_id, project_id)
        if job is None:
            raise NotFound(f"No such fine-tuning job: {clip(job_id)}", param="fine_tuning_job_id",
                           code="fine_tuning_job_not_found")
        return job

    def list(self, project_id: str | None, *, after: str | None, limit: int,
                  metadata: Mapping[str, str] | None) -> Page[FineTuningJob]:
        return self.store.list_jobs(project_id, after=after, limit=limit, metadata=metadata)

    def cancel(self, project_id: str | None, job_id: str) -> FineTuningJob:
        """Cancel any unfinished job. A running one's worker stops its trainer at the next check
        and removes the job's folder then; no process writes to the folder of a job in any
        other status (a worker moves a claimed job to ``running`` before it writes), so it goes
        now."""
        before = self.get(project_id, job_id)
        cancelled = self.store.transition(
            job_id, JobStatus.CANCELLED, events=[job_event(job_id, "Fine-tuning job cancelled")])
        if before.status is not JobStatus.RUNNING:
            work_dirs.settle(self.settings.job_dir(job_id), JobStatus.CANCELLED)
        return cancelled

    def pause(self, project_id: str | None, job_id: str) -> FineTuningJob:
        self.get(project_id, job_id)
        return self.store.transition(
            job_id, JobStatus.PAUSED, events=[job_event(job_id, "Fine-tuning job paused")])

    def resume(self, project_id: str | None, job_id: str) -> FineTuningJob:
        """Put a paused job back in the queue; any other status is a 409, and a project already
        at ``max_active_jobs`` gets a 429 (a paused job holds no place; a queued one does)."""
        self.get(project_id, job_id)
        return self.store.transition(
            job_id, JobStatus.QUEUED, only_from=frozenset({JobStatus.PAUSED}),
            events=[job_event(job_id, "Fine-tuning job resumed, moving job to queued state")],
            max_active=self.settings.max_active_jobs,
        )

    def list_events(self, project_id: str | None, job_id: str, *, after: str | None,
                    limit: int) -> Page[JobEvent]:
        self.get(project_id, job_id)
        return self.store.list_events(job_id, after=after, limit=limit)

    def follow_events(self, project_id: str | None, job_id: str, *,
                      after: str | None) -> Follower:
        """The job's events after ``after`` (all without it), then live ones until its terminal
        event. Checked now, before any stream starts: an unknown or hidden job is a 404 and an
        ``after`` that is not one of the job's events a 400."""
        self.get(project_id, job_id)
        if after is not None and not self.store.has_event(job_id, after):
            raise InvalidRequest(
                f"No event {clip(after)} in fine-tuning job {job_id}: resume a stream with the "
                "id of one of the job's events (the `id:` line of the last event received).",
                param="last_event_id", code="unknown_event_id")
        return Follower(self.live_events, job_id, after)

    def list_checkpoints(self, project_id: str | None, job_id: str, *, after: str | None,
                         limit: int) -> Page[Checkpoint]:
        self.get(project_id, job_id)
        return self.store.list_checkpoints(job_id, after=after, limit=limit)
