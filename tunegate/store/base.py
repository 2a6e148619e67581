"""The store contract: everything the API and workers persist, behind one small protocol.

Backends translate their driver exceptions inside; callers only see domain objects, ``Page`` and
``tunegate.errors`` exceptions. ``tests/store/test_contract.py`` runs against every backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from tunegate.domain.files import StoredFile
from tunegate.domain.jobs import Checkpoint, FineTuningJob, JobEvent, JobStatus
from tunegate.domain.models import CheckpointPermission, FineTunedModel
from tunegate.domain.stored_completions import StoredCompletion
from tunegate.domain.uploads import StoredUpload, UploadPart
from tunegate.domain.webhooks import Delivery, WebhookEndpoint

if TYPE_CHECKING:  # the module imports Page from here
    from tunegate.store.queries.evals import SqlEvals
    from tunegate.store.queries.webhooks import DueDelivery, Outcome

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a newest-first (or oldest-first) listing."""

    items: list[T] = field(default_factory=list)
    has_more: bool = False

    def to_api(self) -> dict[str, Any]:
        data = [item.to_api() for item in self.items]  # type: ignore[attr-defined]
        return {
            "object": "list",
            "data": data,
            "has_more": self.has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }


@dataclass(frozen=True)
class EventsAfter:
    """What ``Store.events_after`` read in one transaction: the jobs' statuses (a missing job
    is absent) and their events, oldest first; ``has_more`` when ``limit`` cut them."""

    statuses: dict[str, JobStatus]
    events: list[JobEvent]
    has_more: bool


@dataclass(frozen=True)
class OwnedJob:
    job: FineTuningJob
    worker_id: str
    heartbeat_at: float | None


class Store(Protocol):
    """Methods taking ``project_id`` see only that project's rows; ``None`` sees every project
    (an admin key's reads, and the worker). A fine-tuned model is also seen by the projects it
    is shared with (checkpoint permissions), for reading and using, not for deleting."""

    # Evals, eval runs and their output items (tunegate.store.queries.evals).
    evals: SqlEvals

    def identity(self) -> str:
        """The database's own id, made once when it was created (``tunegate.domain.data_folder``)."""
        ...

    def restore_reserve(self) -> bool:
        """Keep back the disk space that deletes and a job's stopping need on a full disk, if
        it was used up and there is room again (tunegate.store.reserve); whether it is kept."""
        ...

    # Files
    def add_file(self, file: StoredFile) -> None: ...
    def get_file(self, project_id: str | None, file_id: str) -> StoredFile | None: ...
    def list_files(self, project_id: str | None, *, purpose: str | None, after: str | None,
                   limit: int, ascending: bool, at: int | None = None) -> Page[StoredFile]:
        """With ``at`` (unix seconds), files expired by then are left out (not deleted)."""
        ...
    def delete_file(self, project_id: str | None, file_id: str) -> bool: ...
    def expired_files(self, now: int) -> list[StoredFile]: ...
    def known_file_ids(self, file_ids: Sequence[str]) -> set[str]:
        """Those of ``file_ids`` that have a row (in any project)."""
        ...

    # Jobs
    def create_job(self, job: FineTuningJob, event: JobEvent,
                   max_active: int | None = None) -> None:
        """Insert the job and its first event; with ``max_active``, first raise
        ``TooManyRequests`` if the project already has that many validating, queued or running
        jobs (counted in the same transaction)."""
        ...
    def get_job(self, job_id: str, project_id: str | None = None) -> FineTuningJob | None: ...
    def unfinished_jobs_using(self, project_id: str | None, *, file_id: str | None = None,
                              model: str | None = None) -> list[str]:
        """Ids (oldest first) of the project's unfinished jobs that train on ``file_id`` (as
        training or validation file) or start from ``model``."""
        ...
    def list_jobs(self, project_id: str | None, *, after: str | None, limit: int,
                  metadata: Mapping[str, str] | None) -> Page[FineTuningJob]: ...
    def transition(self, job_id: str, target: JobStatus, *, events: Sequence[JobEvent],
                   changes: Mapping[str, Any] | None = None, worker_id: str | None = None,
                   only_from: frozenset[JobStatus] | None = None,
                   new_files: Sequence[StoredFile] = (),
                   new_models: Sequence[FineTunedModel] = (),
                   max_active: int | None = None, disown: bool = False) -> FineTuningJob:
        """Compare-and-set ``status`` to ``target`` plus ``changes`` and ``events``, atomically,
        together with the rows a finished job brings (its result files and models). With
        ``max_active``, a move into an active status first checks the project's active-job
        limit, as ``create_job`` does. With ``disown``, the worker's hold on the job ends in the
        same transaction (the reaper's re-queue: no moment where the old owner still holds it).

        Succeeds only from a status the transition table allows (and, with ``worker_id``, only
        while that worker owns the job); otherwise raises ``Conflict`` naming the current status.
        """
        ...
    def job_counts(self) -> dict[tuple[str, str], int]:
        """(status, method type) -> how many jobs, every project's (``GET /metrics``)."""
        ...
    def queue_figures(self) -> tuple[int, int | None]:
        """Jobs waiting for a worker, and the oldest one's ``created_at`` (None: none)."""
        ...
    def running_progress(self) -> dict[str, dict[str, Any]]:
        """Each running job's newest metrics event ``data`` ({} before its first step)."""
        ...
    def update_job(self, job_id: str, changes: Mapping[str, Any]) -> None:
        """Change non-status fields (resolved hyperparameters, token counts, estimates)."""
        ...

    # Worker ownership
    def claim_job(self, statuses: Sequence[JobStatus], worker_id: str,
                  now: float) -> FineTuningJob | None:
        """Atomically take the oldest unowned job in one of ``statuses``."""
        ...
    def heartbeat(self, job_id: str, worker_id: str, now: float) -> bool: ...
    def owned_jobs(self) -> list[OwnedJob]:
        """Every job a worker holds, with its owner and last heartbeat (the reaper's view)."""
        ...
    def disown_job(self, job_id: str, worker_id: str) -> bool: ...

    # Events and checkpoints
    def add_events(self, events: Sequence[JobEvent]) -> None: ...
    def record_progress(self, job_id: str, worker_id: str, events: Sequence[JobEvent],
                        changes: Mapping[str, Any] | None = None) -> bool:
        """Add a run's ``events`` and ``changes`` only while ``worker_id`` owns the job and it is
        ``running`` or ``paused`` (``RECORDS_PROGRESS``), atomically; ``False`` (nothing written)
        otherwise: a cancelled or re-queued job gets no progress after the event that ended its
        run."""
        ...
    def last_metrics_step(self, job_id: str) -> int:
        """The step of the job's newest metrics event; 0 when it has none."""
        ...
    def list_events(self, job_id: str, *, after: str | None, limit: int) -> Page[JobEvent]: ...
    def has_event(self, job_id: str, event_id: str) -> bool:
        """Whether ``event_id`` is an event of ``job_id``."""
        ...
    def events_after(self, after: Mapping[str, str | None], *, limit: int) -> EventsAfter:
        """For each job of ``after``, its status and its events whose ids sort after the given
        one (every event for ``None``), oldest first, at most ``limit`` in all: one
        transaction for any number of jobs (the live event streams' poll)."""
        ...
    def add_checkpoint(self, checkpoint: Checkpoint, path: str) -> bool:
        """Add it unless the job has a checkpoint at that step already; return whether added
        (a run that resumed from before a checkpoint saves that checkpoint again)."""
        ...
    def prune_checkpoints(self, job_id: str, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` checkpoints; return the deleted rows' paths."""
        ...
    def checkpoint_paths(self, job_id: str) -> dict[str, str]:
        """``fine_tuned_model_checkpoint`` name -> folder, for the job's checkpoints."""
        ...
    def list_checkpoints(self, job_id: str, *, after: str | None,
                         limit: int) -> Page[Checkpoint]: ...

    # Fine-tuned models
    def add_model(self, model: FineTunedModel) -> None: ...
    def get_model(self, project_id: str | None, model_id: str) -> FineTunedModel | None:
        """The model if the project owns it or has a permission for it."""
        ...
    def list_models(self, project_id: str | None) -> list[FineTunedModel]:
        """The project's own models and those shared with it (oldest first)."""
        ...
    def delete_model(self, project_id: str | None, model_id: str) -> bool:
        """Delete the model if the project owns it, with every permission for it."""
        ...

    # Checkpoint permissions (a model shared with other projects)
    def add_permissions(self, model_id: str,
                        permissions: Sequence[CheckpointPermission]) -> list[CheckpointPermission]:
        """Grant each permission's project access to ``model_id``, atomically; a project that
        has one already keeps it. Returns, in the given order, the permission each project
        now has (the existing one where there was one)."""
        ...
    def list_permissions(self, model_id: str, *, project_id: str | None, after: str | None,
                         limit: int, ascending: bool) -> Page[CheckpointPermission]: ...
    def delete_permission(self, model_id: str, permission_id: str) -> bool: ...

    # Uploads (a file sent in parts)
    def add_upload(self, upload: StoredUpload) -> None: ...
    def get_upload(self, project_id: str | None, upload_id: str) -> StoredUpload | None: ...
    def add_upload_part(self, part: UploadPart, *, at: int, max_total: int) -> None:
        """Record a part of a pending upload, atomically checking that the upload is pending
        and not expired at ``at`` (``Conflict`` naming its status otherwise) and that its parts
        then total at most ``max_total`` bytes (``InvalidRequest`` otherwise)."""
        ...
    def upload_parts(self, upload_id: str) -> list[UploadPart]:
        """The parts of a pending upload, oldest first (none once it is not pending)."""
        ...
    def complete_upload(self, upload_id: str, file: StoredFile, *, at: int) -> StoredUpload:
        """Compare-and-set a pending, unexpired upload to ``completed`` with ``file`` as its
        file: the file row inserted and the part rows deleted in the same transaction.
        ``Conflict`` naming the status when the upload is no longer pending."""
        ...
    def cancel_upload(self, upload_id: str, *, at: int) -> StoredUpload:
        """Compare-and-set a pending, unexpired upload to ``cancelled`` (its part rows
        deleted); ``Conflict`` naming the status otherwise."""
        ...
    def expire_uploads(self, at: int) -> int:
        """Record every pending upload past its ``expires_at`` as ``expired`` (part rows
        deleted); how many."""
        ...
    def pending_upload_ids(self, upload_ids: Sequence[str], *, at: int) -> set[str]:
        """Those of ``upload_ids`` that are pending and not expired at ``at``."""
        ...

    # Webhooks (tunegate.store.queries.webhooks). Deliveries are written by the status changes
    # that cause them (``transition``, an eval run's cancel and finish), never on their own.
    def add_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None: ...
    def get_webhook_endpoint(self, project_id: str | None,
                             endpoint_id: str) -> WebhookEndpoint | None: ...
    def list_webhook_endpoints(self, project_id: str | None, *, after: str | None,
                               limit: int) -> Page[WebhookEndpoint]: ...
    def delete_webhook_endpoint(self, project_id: str | None, endpoint_id: str) -> bool: ...
    def update_webhook_endpoint(self, before: WebhookEndpoint,
                                after: WebhookEndpoint) -> bool: ...
    def rotate_webhook_secret(self, endpoint: WebhookEndpoint) -> bool: ...
    def list_webhook_deliveries(self, endpoint_id: str, *, after: str | None,
                                limit: int) -> Page[Delivery]: ...
    def due_webhook_deliveries(self, now: float, *, limit: int,
                               skip_endpoints: Sequence[str] = ()) -> list[DueDelivery]: ...
    def claim_webhook_delivery(self, delivery: Delivery, until: float) -> bool: ...
    def record_webhook_attempt(self, delivery_id: str, *, status_code: int | None,
                               error: str | None, now: float, first_retry: float,
                               retry_for: float, disable_after: float) -> Outcome | None: ...
    def webhook_delivery_counts(self) -> dict[str, int]: ...

    # Stored chat completions (tunegate.store.queries.stored_completions).
    def add_stored_completion(self, stored: StoredCompletion) -> None: ...
    def get_stored_completion(self, project_id: str | None,
                              completion_id: str) -> StoredCompletion | None: ...
    def list_stored_completions(self, project_id: str | None, *, model: str | None,
                                metadata: Mapping[str, str] | None, after: str | None,
                                limit: int, ascending: bool) -> Page[StoredCompletion]: ...
    def set_stored_completion_metadata(self, project_id: str | None, completion_id: str,
                                       metadata: Mapping[str, str]) -> StoredCompletion | None:
        """Replace the metadata; the completion as it is now, None when there is none."""
        ...
    def delete_stored_completion(self, project_id: str | None, completion_id: str) -> bool: ...
