"""Fine-tuning jobs: the status machine, the domain objects and their OpenAI wire shapes.

The status machine is the table ``EDGES`` (every allowed change and why it happens) plus
``ON_ENTRY`` (what entering a status does besides the status: stamps and the work folder).
``check_transition`` is the only judge of a status change; the store applies each allowed change
as a compare-and-set together with ``entry_changes`` and the event row that announces it.
``state_diagram()`` renders the table; docs/jobs.md and openapi.yaml show that rendering (a test
keeps them equal).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunegate import ids
from tunegate.domain.methods import Method
from tunegate.errors import Conflict


class JobStatus(enum.StrEnum):
    """OpenAI's wire values. The seed gateway's "pending" is VALIDATING_FILES or QUEUED."""

    VALIDATING_FILES = "validating_files"  # a worker checks the files line by line
    QUEUED = "queued"  # files are valid; waiting for a worker to train
    RUNNING = "running"  # a worker is training
    PAUSED = "paused"  # training state saved; resume puts the job back in the queue
    SUCCEEDED = "succeeded"  # the fine-tuned model exists (terminal)
    FAILED = "failed"  # ``error`` says why (terminal)
    CANCELLED = "cancelled"  # stopped on request (terminal)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# Jobs that hold a place under a project's active-job limit (paused ones wait without a worker).
ACTIVE = frozenset({JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING})
# Where a run's progress is still recorded: a pause lets the step in flight finish, and that
# step is the one the saved state resumes after (a cancel's steps are dropped).
RECORDS_PROGRESS = frozenset({JobStatus.RUNNING, JobStatus.PAUSED})

_S = JobStatus
# Every allowed status change, with why it happens (the diagram's labels).
EDGES: dict[tuple[JobStatus, JobStatus], str] = {
    (_S.VALIDATING_FILES, _S.QUEUED): "the files passed the checks",
    (_S.VALIDATING_FILES, _S.FAILED): "a file did not pass (error names the line)",
    (_S.VALIDATING_FILES, _S.CANCELLED): "cancel",
    (_S.QUEUED, _S.RUNNING):
        "a worker claims it, or its worker keeps it (resumed before the pause stopped it)",
    (_S.QUEUED, _S.PAUSED): "pause",
    (_S.QUEUED, _S.FAILED): "its model is no longer available",
    (_S.QUEUED, _S.CANCELLED): "cancel",
    (_S.RUNNING, _S.SUCCEEDED): "trained, exported and published",
    (_S.RUNNING, _S.FAILED): "training failed (error says why)",
    (_S.RUNNING, _S.CANCELLED): "cancel",
    (_S.RUNNING, _S.PAUSED): "pause (training state saved)",
    (_S.RUNNING, _S.QUEUED): "its worker stopped or died; resumes from saved state",
    (_S.PAUSED, _S.QUEUED): "resume",
    (_S.PAUSED, _S.CANCELLED): "cancel",
}
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    status: frozenset(target for source, target in EDGES if source is status) for status in JobStatus
}


class WorkDir(enum.Enum):
    """What happens to a job's folder (``jobs/<id>/``) when it enters a status."""

    KEEP = "keep"
    TRIM = "trim"  # the model files stay; resumable state and the trainer's inputs go
    REMOVE = "remove"


@dataclass(frozen=True)
class OnEntry:
    stamps_finished_at: bool = False
    clears_estimate: bool = False
    work_dir: WorkDir = WorkDir.KEEP


ON_ENTRY: dict[JobStatus, OnEntry] = {
    _S.VALIDATING_FILES: OnEntry(),
    # A finish estimated earlier no longer holds (the job waits, or lost its worker); the move
    # from validation sets a fresh one with it (tunegate.worker.loop).
    _S.QUEUED: OnEntry(clears_estimate=True),
    _S.RUNNING: OnEntry(),
    _S.PAUSED: OnEntry(clears_estimate=True),
    _S.SUCCEEDED: OnEntry(stamps_finished_at=True, clears_estimate=True, work_dir=WorkDir.TRIM),
    _S.FAILED: OnEntry(stamps_finished_at=True, clears_estimate=True, work_dir=WorkDir.REMOVE),
    _S.CANCELLED: OnEntry(stamps_finished_at=True, clears_estimate=True,
                          work_dir=WorkDir.REMOVE),
}


def entry_changes(target: JobStatus, at: int) -> dict[str, Any]:
    """The job fields that entering ``target`` at unix time ``at`` sets."""
    entry = ON_ENTRY[target]
    changes: dict[str, Any] = {}
    if entry.stamps_finished_at:
        changes["finished_at"] = at
    if entry.clears_estimate:
        changes["estimated_finish"] = None
    return changes


def progress_changes(status: JobStatus, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` as progress recorded while the job is in ``status`` may apply them.

    A pause lets the step in flight finish and records it (``RECORDS_PROGRESS``), but a job
    that left ``running`` has no finish to estimate: entering ``paused`` cleared
    ``estimated_finish``, and that step's figures must not set it again.
    """
    if ON_ENTRY[status].clears_estimate:
        return {key: value for key, value in changes.items() if key != "estimated_finish"}
    return dict(changes)


def state_diagram() -> str:
    """The table as text, one edge a line, in the order of ``EDGES``."""
    width = max(len(f"{source.value} --> {target.value}") for source, target in EDGES)
    lines = [f"{source.value} --> {target.value}".ljust(width) + f"   {reason}"
             for (source, target), reason in EDGES.items()]
    return "\n".join(lines) + "\n"


# What the user asked for, phrased for the 409 answer when the table says no.
_VERBS = {
    JobStatus.CANCELLED: "cancelled",
    JobStatus.PAUSED: "paused",
    JobStatus.QUEUED: "resumed",
}


# A finished status as the subject of a sentence: "is succeeded and cannot be cancelled" does
# not read. Unfinished ones keep their wire value ("is validating_files"), what the job shows.
_STANDING = {
    JobStatus.SUCCEEDED: "has already succeeded",
    JobStatus.FAILED: "has already failed",
    JobStatus.CANCELLED: "has already been cancelled",
}


def _standing(status: JobStatus) -> str:
    return _STANDING.get(status, f"is {status.value}")


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which ``target`` may be reached."""
    return frozenset(source for source, targets in TRANSITIONS.items() if target in targets)


def check_transition(job_id: str, current: JobStatus, target: JobStatus,
                     only_from: frozenset[JobStatus] | None = None) -> None:
    """Raise ``Conflict`` (409) unless the table allows ``current`` -> ``target``.

    ``only_from`` narrows the table for a user action: a resume is ``paused`` -> ``queued``
    only, though files validated and a dead worker's job also lead to ``queued``.
    """
    verb = _VERBS.get(target, f"moved to {target.value}")
    if only_from is not None and current not in only_from:
        allowed = " or ".join(sorted(status.value for status in only_from))
        raise Conflict(
            f"Fine-tuning job {job_id} {_standing(current)} and cannot be {verb}; "
            f"only a {allowed} job can.",
            param="fine_tuning_job_id",
            code="invalid_job_status",
        )
    if target in TRANSITIONS[current]:
        return
    raise Conflict(
        f"Fine-tuning job {job_id} {_standing(current)} and cannot be {verb}.",
        param="fine_tuning_job_id",
        code="invalid_job_status",
    )


@dataclass(frozen=True)
class JobError:
    code: str
    message: str
    param: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param}


@dataclass(frozen=True)
class FineTuningJob:
    """One fine-tuning job, as stored. ``to_api`` gives OpenAI's ``fine_tuning.job`` object."""

    id: str
    project_id: str
    created_at: int
    model: str
    organization_id: str
    status: JobStatus
    training_file: str
    validation_file: str | None
    method: Method
    seed: int
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    trained_tokens: int | None = None
    error: JobError | None = None
    result_files: list[str] = field(default_factory=list)
    estimated_finish: int | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": self.created_at,
            "error": self.error.to_api() if self.error else None,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            # The deprecated top-level field mirrors the hyperparameters every method shares.
            "hyperparameters": self.method.hyperparameters.shared_wire(),
            "model": self.model,
            "organization_id": self.organization_id,
            "result_files": list(self.result_files),
            "seed": self.seed,
            "status": self.status.value,
            "trained_tokens": self.trained_tokens,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "integrations": self.integrations,
            "estimated_finish": self.estimated_finish,
            "method": self.method.to_wire(),
            "metadata": self.metadata,
            "user_provided_suffix": self.suffix,
        }


def fine_tuned_model_name(base_model: str, organization: str, suffix: str | None,
                          job_id: str) -> str:
    """``ft:{base}:{org}:{suffix}:{id}``; the id is the job id's last 8 characters, so a job
    resumed after a crash keeps its name. An empty suffix gives ``::``, as OpenAI's names do."""
    return f"ft:{base_model}:{organization}:{suffix or ''}:{job_id[-8:]}"


def base_name_of(model_name: str) -> str | None:
    """The ``{base}`` of a fine-tuned model's name ``ft:{base}:{org}:{suffix}:{id}`` (read from
    the right: a base id may hold ``:``); ``None`` for other names."""
    if not model_name.startswith("ft:"):
        return None
    parts = model_name.removeprefix("ft:").rsplit(":", 3)
    return parts[0] if len(parts) == 4 and parts[0] else None


def checkpoint_model_name(model_name: str, step: int) -> str:
    return f"{model_name}:ckpt-step-{step}"


class EventLevel(enum.StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True)
class JobEvent:
    """A line in a job's history: a message or a metrics sample."""

    id: str
    job_id: str
    created_at: int
    level: EventLevel
    message: str
    type: str = "message"  # "message" | "metrics"
    data: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job.event",
            "created_at": self.created_at,
            "level": self.level.value,
            "message": self.message,
            "type": self.type,
            # OpenAI's event schema has no null data; its message events carry {}.
            "data": self.data if self.data is not None else {},
        }


METRIC_KEYS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
# What DPO runs measure besides the loss: null for supervised checkpoints, as the token
# accuracies are null for DPO ones (every key is always present).
PREFERENCE_METRIC_KEYS = tuple(
    prefix + name for prefix in ("train_", "valid_", "full_valid_")
    for name in ("reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"))


# What reinforcement runs measure (OpenAI's train_/valid_reward_mean and tunegate's spread, share
# of groups whose answers all scored alike, answer length in tokens, answers the grader could
# not score): null for the other methods' checkpoints. A multi grader adds one
# train_/valid_reward_<part name> per part, kept as reported.
REINFORCEMENT_METRIC_KEYS = tuple(
    prefix + name for prefix in ("train_", "valid_")
    for name in ("reward_mean", "reward_std", "zero_std_groups", "completion_length",
                 "grader_errors"))
PART_REWARD_PREFIXES = ("train_reward_", "valid_reward_")
CHECKPOINT_METRIC_KEYS = (*METRIC_KEYS, *PREFERENCE_METRIC_KEYS, *REINFORCEMENT_METRIC_KEYS)


@dataclass(frozen=True)
class Checkpoint:
    """A saved adapter at an epoch end, servable under its own model name."""

    id: str
    job_id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    step_number: int
    metrics: dict[str, float | None]

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job.checkpoint",
            "created_at": self.created_at,
            "fine_tuned_model_checkpoint": self.fine_tuned_model_checkpoint,
            "step_number": self.step_number,
            "metrics": {**{key: self.metrics.get(key) for key in CHECKPOINT_METRIC_KEYS},
                        **{key: value for key, value in self.metrics.items()
                           if key.startswith(PART_REWARD_PREFIXES)}},
            "fine_tuning_job_id": self.job_id,
        }


def now() -> int:
    return int(time.time())


def job_event(job_id: str, message: str, level: EventLevel = EventLevel.INFO,
              type: str = "message", data: dict[str, Any] | None = None) -> JobEvent:
    """A new event row for ``job_id`` stamped now."""
    return JobEvent(id=ids.new_id(ids.EVENT), job_id=job_id, created_at=now(), level=level,
                    message=message, type=type, data=data)
