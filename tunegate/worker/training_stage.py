"""Stage 2 of a job: train it in a child process, record its progress, decide how it ended.

``TrainingStage.run`` owns a claimed ``queued`` job from ``running`` to its final status; the
final status is decided in one place, ``_finish``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunegate import ids
from tunegate.domain.files import FINE_TUNE_RESULTS, StoredFile
from tunegate.domain.jobs import (
    Checkpoint,
    EventLevel,
    FineTuningJob,
    JobError,
    JobStatus,
    checkpoint_model_name,
    fine_tuned_model_name,
    job_event,
    now,
)
from tunegate.errors import Conflict
from tunegate.store.base import FineTunedModel
from tunegate.training.spec import TrainingSpec
from tunegate.worker.models import ResolvedModel, resolve_model
from tunegate.worker.services import Services
from tunegate.worker.standby import Standby
from tunegate.worker.trainer_process import Outcome, TrainerProcess

log = logging.getLogger("tunegate.training_stage")
# Longest exception text quoted in a job's error (the whole text goes to the server log).
MAX_DETAIL = 300

POLL_SECONDS = 0.5
KEEP_CHECKPOINTS = 3


class TrainingStage:
    def __init__(self, service: Services, worker_id: str,
                 between_polls: Callable[[], object] = lambda: None,
                 shutting_down: Callable[[], bool] = lambda: False,
                 standby: Standby | None = None):
        # A trainer child already waiting with its imports done (tunegate.worker.standby).
        self.standby = standby
        self.recorded_through = 0  # metrics of steps up to here are recorded already
        # Called while the child trains, so other jobs' file validation need not wait.
        self.between_polls = between_polls
        # When the worker is asked to stop, the run saves its state and goes back to the queue.
        self.shutting_down = shutting_down
        self.service = service
        self.store = service.store
        self.settings = service.settings
        self.worker_id = worker_id

    def work_dir(self, job_id: str) -> Path:
        return self.settings.job_dir(job_id)

    # Setup ----------------------------------------------------------------------------------

    def resolve_model(self, job: FineTuningJob) -> ResolvedModel:
        return resolve_model(self.settings, self.store, job)

    def build_spec(self, job: FineTuningJob, model: ResolvedModel) -> TrainingSpec:
        storage = self.service.storage
        work_dir = self.work_dir(job.id)
        return TrainingSpec(
            job_id=job.id,
            method=job.method_type,
            base_model=model.ref,
            training_file=str(storage.path(job.training_file)),
            validation_file=str(storage.path(job.validation_file)) if job.validation_file else None,
            hyperparameters=job.hyperparameters,
            seed=job.seed,
            work_dir=str(work_dir),
            cache_dir=str(self.settings.model_cache),
            max_seq_len=self.settings.max_seq_len,
            init_adapter=model.init_adapter,
            resume=(work_dir / "run").exists(),
        )

    # Run ------------------------------------------------------------------------------------

    def run(self, job: FineTuningJob) -> None:
        """Train a claimed ``queued`` job to a final (or paused) status."""
        try:
            model = self.resolve_model(job)
        except LookupError as exc:
            self._fail(job, "model_not_available", str(exc))
            return
        resuming = (self.work_dir(job.id) / "run").exists()
        started = self._move(job, JobStatus.RUNNING, "Fine-tuning job resumed from saved state"
                             if resuming else "Fine-tuning job started")
        if started is None:
            return
        try:
            self._train(started, model, resuming)
        except Exception as exc:
            # Whatever broke after `running` (a trainer that cannot be spawned, an export
            # error), the job must end: the worker gives it up next, and no reaper looks at a
            # running job that no worker owns.
            log.exception("training job %s failed inside the worker", job.id)
            detail = f"{type(exc).__name__}: {exc}"[:MAX_DETAIL]
            self._fail(started, "internal_error", f"The worker failed while training: {detail}")

    def _train(self, job: FineTuningJob, model: ResolvedModel, resuming: bool) -> None:
        spec = self.build_spec(job, model)
        # After a crash the run resumes from its last saved state and redoes the steps since;
        # they were recorded already (with the same figures: resuming is exact), so skip them.
        self.recorded_through = self._last_recorded_step(job.id) if resuming else 0
        process = TrainerProcess(spec.to_json(), self.work_dir(job.id))
        process.start(self.standby)
        try:
            self._supervise(job, model, process)
        finally:
            if process.running:  # the worker failed mid-run: no child trains on unowned
                process.kill()

    def _supervise(self, job: FineTuningJob, model: ResolvedModel,
                   process: TrainerProcess) -> None:
        pause_sent = False
        while process.running:
            self._record(job, model, process.drain())
            status = self._current_status(job.id)
            if status is JobStatus.CANCELLED:
                process.cancel(time.monotonic())
            elif (status is JobStatus.PAUSED or self.shutting_down()) and not pause_sent:
                process.pause()
                pause_sent = True
            self.between_polls()
            time.sleep(POLL_SECONDS)
        outcome = process.outcome()
        self._record(job, model, process.drain())
        self._finish(job, outcome, model)

    def _current_status(self, job_id: str) -> JobStatus | None:
        current = self.store.get_job(job_id)
        return current.status if current else None

    # Progress -------------------------------------------------------------------------------

    def _record(self, job: FineTuningJob, model: ResolvedModel,
                events: list[dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("kind")
            if kind == "message":
                self.store.add_events([job_event(job.id, event["message"],
                                                 EventLevel(event.get("level", "info")))])
            elif kind == "hyperparameters":
                method = {"type": job.method_type,
                          job.method_type: {"hyperparameters": {**job.hyperparameters,
                                                                **event["resolved"]}}}
                self.store.update_job(job.id, {"method": method})
                self.store.add_events([job_event(
                    job.id, "Hyperparameters resolved: " + ", ".join(
                        f"{k}={v}" for k, v in event["resolved"].items()))])
            elif kind == "metrics":
                self._record_metrics(job, event)
            elif kind == "checkpoint":
                self._record_checkpoint(job, model, event)

    def _last_recorded_step(self, job_id: str) -> int:
        """The step of the job's newest metrics event (events list newest first)."""
        after = None
        while True:
            page = self.store.list_events(job_id, after=after, limit=100)
            for event in page.items:
                if event.type == "metrics" and event.data:
                    return int(event.data.get("step", 0))
            if not page.has_more or not page.items:
                return 0
            after = page.items[-1].id

    def _record_metrics(self, job: FineTuningJob, event: dict[str, Any]) -> None:
        if int(event["step"]) <= self.recorded_through:
            return
        data = {key: value for key, value in event.items()
                if key not in ("kind", "trained_tokens", "estimated_finish_seconds")}
        message = f"Step {event['step']}/{event['total_steps']}: training loss={event['train_loss']:.4f}"
        if event.get("train_reward_accuracy") is not None:
            message += f", reward accuracy={event['train_reward_accuracy']:.2f}"
        if event.get("valid_loss") is not None:
            message += f", validation loss={event['valid_loss']:.4f}"
        self.store.add_events([job_event(job.id, message, type="metrics", data=data)])
        changes: dict[str, Any] = {"trained_tokens": event.get("trained_tokens")}
        if event.get("estimated_finish_seconds") is not None:
            changes["estimated_finish"] = now() + int(event["estimated_finish_seconds"])
        self.store.update_job(job.id, changes)

    def _record_checkpoint(self, job: FineTuningJob, model: ResolvedModel,
                           event: dict[str, Any]) -> None:
        step = int(event["step"])
        name = checkpoint_model_name(self._model_name(job, model), step)
        checkpoint = Checkpoint(id=ids.new_id(ids.CHECKPOINT), job_id=job.id, created_at=now(),
                                fine_tuned_model_checkpoint=name, step_number=step,
                                metrics={"step": step, **event.get("metrics", {})})
        self.store.add_checkpoint(checkpoint, event["path"])
        self.store.prune_checkpoints(job.id, KEEP_CHECKPOINTS)
        self.store.add_events([job_event(job.id, f"Checkpoint created at step {step}")])

    @staticmethod
    def _model_name(job: FineTuningJob, model: ResolvedModel) -> str:
        return fine_tuned_model_name(model.base.id, job.organization_id, job.suffix, job.id)

    # The end --------------------------------------------------------------------------------

    def _finish(self, job: FineTuningJob, outcome: Outcome, model: ResolvedModel) -> None:
        """The one place that decides how a run ended."""
        if outcome.status == "succeeded" and outcome.result is not None:
            self._succeed(job, outcome.result, model)
        elif outcome.status == "paused":
            self._paused(job)
        elif outcome.status == "cancelled":
            shutil.rmtree(self.work_dir(job.id), ignore_errors=True)
        else:
            self._fail(job, outcome.code or "training_error", outcome.message or "Training failed.",
                       outcome.param)

    def _paused(self, job: FineTuningJob) -> None:
        """The run saved its state and stopped: why decides what happens to the state."""
        status = self._current_status(job.id)
        if status is JobStatus.RUNNING:
            self._move(job, JobStatus.QUEUED, "The worker is shutting down; training state "
                       "saved and the job is back in the queue")
        elif status is JobStatus.CANCELLED:  # cancelled while its pause was being saved
            shutil.rmtree(self.work_dir(job.id), ignore_errors=True)
        else:
            self.store.add_events([job_event(job.id, "Training state saved; resume continues "
                                             "from where it stopped")])

    def _fail(self, job: FineTuningJob, code: str, message: str,
              param: str | None = None) -> None:
        self._move(job, JobStatus.FAILED, message, level=EventLevel.ERROR,
                   changes={"error": JobError(code=code, message=message, param=param),
                            "finished_at": now(), "estimated_finish": None})

    def _succeed(self, job: FineTuningJob, result: dict[str, Any], model: ResolvedModel) -> None:
        name = self._model_name(job, model)
        work_dir = self.work_dir(job.id)
        self._export(work_dir, model, name)
        checkpoints = self.store.checkpoint_paths(job.id)
        for checkpoint_name, folder in checkpoints.items():
            self._export(Path(folder), model, checkpoint_name)
        created = now()
        models = [FineTunedModel(id=name, project_id=job.project_id, job_id=job.id,
                                 base_model=model.base.id, created_at=created, kind="model",
                                 path=str(work_dir))]
        models += [FineTunedModel(id=ckpt_name, project_id=job.project_id, job_id=job.id,
                                  base_model=model.base.id, created_at=created,
                                  kind="checkpoint", path=folder)
                   for ckpt_name, folder in checkpoints.items()]
        results = self._results_file(job, result.get("results_csv"))
        self._move(job, JobStatus.SUCCEEDED, "The job has successfully completed",
                   extra_events=[f"New fine-tuned model created: {name}"],
                   changes={"fine_tuned_model": name, "finished_at": now(),
                            "trained_tokens": result.get("trained_tokens"),
                            "estimated_finish": None,
                            "result_files": [results.id] if results else []},
                   new_files=[results] if results else [], new_models=models)

    def _export(self, folder: Path, model: ResolvedModel, name: str) -> None:
        """Write ``adapter.gguf`` beside the PEFT ``adapter/`` folder (GGUF bases only)."""
        if model.base.kind != "gguf":
            return
        from tunegate.adapters.export import export_lora_gguf

        export_lora_gguf(folder / "adapter", model.base.path, folder / "adapter.gguf", name=name)

    def _results_file(self, job: FineTuningJob, csv_path: str | None) -> StoredFile | None:
        if not csv_path or not Path(csv_path).is_file():
            return None
        file_id = ids.new_id(ids.FILE)
        with open(csv_path, "rb") as source:
            size = self.service.storage.write(file_id, source)
        return StoredFile(id=file_id, project_id=job.project_id, bytes=size, created_at=now(),
                          filename=f"{job.id}-results.csv", purpose=FINE_TUNE_RESULTS)

    def _move(self, job: FineTuningJob, target: JobStatus, message: str,
              level: EventLevel = EventLevel.INFO, changes: dict[str, Any] | None = None,
              extra_events: list[str] | None = None, new_files: list[StoredFile] | None = None,
              new_models: list[FineTunedModel] | None = None) -> FineTuningJob | None:
        """Transition as this worker; ``None`` when the user got there first (cancel, pause)."""
        events = [job_event(job.id, text) for text in extra_events or []]
        events.append(job_event(job.id, message, level))
        try:
            return self.store.transition(job.id, target, worker_id=self.worker_id, events=events,
                                         changes=changes, new_files=new_files or (),
                                         new_models=new_models or ())
        except Conflict as exc:
            log.info("job %s not moved to %s: %s", job.id, target.value, exc.message)
            for file in new_files or []:
                self.service.storage.delete(file.id)
            return None
