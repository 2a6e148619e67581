"""Stage 2 of a job: train it in a child process, record its progress, decide how it ended.

``TrainingStage.run`` owns a claimed ``queued`` job from ``running`` to its final status; the
final status is decided in one place, ``_finish``. Every part of it survives a kill -9 of the
worker at any moment, without redoing or recording anything twice:

- a step's metrics are recorded once: a resumed run skips steps up to the job's last recorded
  one (the figures would be the same: resuming is exact);
- checkpoints are recorded once per step (the store refuses a second one);
- what the trainer reported before its last saved state is recorded even if the worker died
  before reading it: a taking-over worker records it from the journal (tunegate.training.journal);
- a finished run is recorded in ``result.json`` before its resumable state goes, so a worker
  that dies while exporting or publishing never trains it again: the next one goes straight to
  the export (which skips files already written) and the one-transaction publish
  (tunegate.worker.publishing);
- a resume that lands while this worker still holds the job (its pause not yet seen or not yet
  saved) gives the job back to it: ``running`` again at the next poll (``queued`` for that
  poll at most, not for the rest of the run), continued from the pause's saved state if the
  run stopped;
- a trainer child that dies (an OOM kill, a crash) is restarted from the last saved state, up
  to ``TRAINER_RESTARTS`` times, with a ``warn`` event saying how it died;
- the job's folder is settled by its final status (tunegate.domain.work_dirs) once the child
  has stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunegate import ids
from tunegate.domain import work_dirs
from tunegate.domain.jobs import (
    RECORDS_PROGRESS,
    Checkpoint,
    EventLevel,
    FineTuningJob,
    JobError,
    JobEvent,
    JobStatus,
    checkpoint_model_name,
    fine_tuned_model_name,
    job_event,
    now,
)
from tunegate.errors import InsufficientStorage, is_disk_full
from tunegate.settings import Settings
from tunegate.training import estimate, journal
from tunegate.training.errors import INSUFFICIENT_STORAGE, OUT_OF_MEMORY
from tunegate.training.messages import (
    CheckpointSaved,
    HyperparametersResolved,
    Note,
    StepMetrics,
    TrainerMessage,
)
from tunegate.training.spec import RunStatus, TrainingResult, TrainingSpec
from tunegate.worker import memory_plan, train_speed
from tunegate.worker.host import Host
from tunegate.worker.job_evals import JobEvals
from tunegate.worker.models import ResolvedModel, resolve_model
from tunegate.worker.moves import move_as_worker
from tunegate.worker.publishing import Publisher, export_gguf
from tunegate.worker.standby import Standby
from tunegate.worker.trainer_process import TrainerProcess
from tunegate.worker.training_run import Executor, Outcome, TrainingRun

log = logging.getLogger("tunegate.training_stage")
# Longest exception text quoted in a job's error (the whole text goes to the server log).
MAX_DETAIL = 300

POLL_SECONDS = 0.5
KEEP_CHECKPOINTS = 3
# A child that dies is started again from the saved state this many times before the job fails.
TRAINER_RESTARTS = 2
DISK_FULL = ("The server's data folder filled up while the worker prepared or recorded the "
             "training.")
# A run that meets a full disk goes back to the queue, to resume from its last saved state once
# there is room (Worker.train_next waits for it), this many times; the next time it fails.
DISK_FULL_REQUEUES = 3
# Said by each such warn event, which are counted (the reaper's words differ).
BACK_FOR_ROOM = "The job waits in the queue for room on the disk"
# A reinforcement step's training answers shown in its metrics event (the dashboard's samples),
# and the most characters of each.
SHOWN_SAMPLES = 3
SHOWN_SAMPLE_CHARS = 500


class TrainingStage:
    def __init__(self, service: Host, worker_id: str,
                 between_polls: Callable[[], object] = lambda: None,
                 shutting_down: Callable[[], bool] = lambda: False,
                 standby: Standby | None = None, executor: Executor | None = None):
        # A trainer child already waiting with its imports done (tunegate.worker.standby).
        self.standby = standby
        self.recorded_through = 0  # metrics of steps up to here are recorded already
        self.unannounced_checkpoints: set[int] = set()  # steps whose checkpoint has no event yet
        self.waiting_for_room = False  # the trainer's messages wait for room in the store
        # This run's steps' tokens/s and the tokens it trained so far: its measured speed.
        self.step_rates: list[float] = []
        self.trained_tokens = 0
        # Called while the child trains, so other jobs' file validation need not wait.
        self.between_polls = between_polls
        # When the worker is asked to stop, the run saves its state and goes back to the queue.
        self.shutting_down = shutting_down
        self.service = service
        self.store = service.store
        self.settings = service.settings
        self.worker_id = worker_id
        self.executor = executor or default_executor(self.settings)
        self.publisher = Publisher(self.store, service.storage, worker_id, self.executor.export)
        # A reinforcement job's validations, recorded as runs of its eval.
        self.job_evals = JobEvals(self.store, service.storage,
                                  report_url=f"{self.settings.own_url}/dashboard/")

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
            method=job.method,
            base_model=model.ref,
            training_file=str(storage.path(job.training_file)),
            validation_file=str(storage.path(job.validation_file)) if job.validation_file else None,
            seed=job.seed,
            work_dir=str(work_dir),
            cache_dir=str(self.settings.model_cache),
            max_seq_len=self.settings.max_seq_len,
            init_adapter=model.init_adapter,
            resume=(work_dir / "run").exists(),
            gradient_checkpointing=model.gradient_checkpointing,
            # Model graders (and cosine embeddings) reach the models as eval runs do.
            grader_endpoint=self.settings.eval_base_url if job.method.grader else None,
            grader_api_key=self.settings.eval_api_key if job.method.grader else None,
            python_grader_seconds=(self.settings.python_grader_seconds if job.method.grader
                                   else None),
            python_grader_memory_mb=(self.settings.python_grader_memory_mb if job.method.grader
                                     else None),
        )

    # Run ------------------------------------------------------------------------------------

    def run(self, job: FineTuningJob) -> None:
        """Train a claimed ``queued`` job to a final (or paused) status."""
        try:
            model = self.resolve_model(job)
        except LookupError as exc:
            self._fail(job, "model_not_available", str(exc))
            return
        planned = memory_plan.plan_job(self.settings, model.ref)
        if planned is not None and not planned.memory.fits:
            # Before the trainer starts and before the job's folder exists: nothing to undo.
            self._fail(job, memory_plan.INSUFFICIENT_MEMORY,
                       estimate.refusal(planned.memory, model.base.id))
            return
        started = self._move(job, JobStatus.RUNNING, self._start_message(job.id))
        if started is None:
            return
        if planned is not None:
            self._announce_plan(started, model, planned)
            model = replace(model, gradient_checkpointing=planned.memory.estimate.checkpointing)
        fresh, began = not self.work_dir(job.id).exists(), time.monotonic()
        try:
            created = self.job_evals.ensure(started)
            if created is not None:
                self._note(started, created)
            outcome = self._train(started, model)
            self._finish(started, outcome, model)
            # A reinforcement step's time goes mostly to rollouts: not a LoRA step's speed.
            if (planned is not None and fresh and outcome.status is RunStatus.SUCCEEDED
                    and job.method.grader is None):
                self._record_speed(planned.shape.n_params, time.monotonic() - began)
        except Exception as exc:
            # Whatever broke after `running` (a trainer that cannot be spawned, an export
            # error, a full disk), the job must end: the worker gives it up next, and no reaper
            # looks at a running job that no worker owns. On a full disk the store records the
            # failure in the room it keeps for that (tunegate.store.reserve).
            if isinstance(exc, InsufficientStorage) or is_disk_full(exc):
                log.error("training job %s met a full disk", job.id, exc_info=True)
                self._wait_for_room(started, DISK_FULL)
                return
            log.exception("training job %s failed inside the worker", job.id)
            detail = f"{type(exc).__name__}: {exc}"[:MAX_DETAIL]
            self._fail(started, "internal_error", f"The worker failed while training: {detail}")
        finally:
            self._settle_work_dir(job.id)

    def _announce_plan(self, job: FineTuningJob, model: ResolvedModel,
                       planned: memory_plan.JobPlan) -> None:
        """The estimate in an event, and ``estimated_finish`` from now, before the first step
        (the one made at validation assumed the job started then)."""
        tokens = memory_plan.tokens_to_train(self.settings, model.ref,
                                             self.service.storage.path(job.training_file),
                                             job.method)
        said, changes = memory_plan.announcement(self.settings, planned, tokens)
        self._progress(job, [job_event(job.id, said)], changes)

    def _record_speed(self, n_params: int, wall_seconds: float) -> None:
        """Keep the speed of a run trained from its start to its end by this worker, for the
        next jobs' duration estimates (a resumed run's figures would mix runs)."""
        measured = train_speed.from_run(n_params, self.step_rates, self.trained_tokens,
                                        wall_seconds)
        if measured is not None:
            train_speed.record(self.settings.data_dir, measured)

    def _start_message(self, job_id: str) -> str:
        work_dir = self.work_dir(job_id)
        if TrainingResult.saved(work_dir) is not None:
            return "Fine-tuning job resumed: training had finished; exporting and publishing"
        if (work_dir / "run").exists():
            return "Fine-tuning job resumed from saved state"
        return "Fine-tuning job started"

    def _settle_work_dir(self, job_id: str) -> None:
        """Apply the final status's folder rule now that no child writes there."""
        status = self._current_status(job_id)
        if status is not None and status.is_terminal:
            work_dirs.settle(self.work_dir(job_id), status)

    def _train(self, job: FineTuningJob, model: ResolvedModel) -> Outcome:
        """Run the trainer (again after a crash) until it ends; a run that finished before the
        worker died is not trained again."""
        self._record_journal(job, model)
        saved = TrainingResult.saved(self.work_dir(job.id))
        if saved is not None:
            return Outcome(status=RunStatus.SUCCEEDED, result=saved)
        restarts = 0
        while True:
            outcome = self._run_child(job, model)
            status = self._status_holding(job)
            if (outcome.status is RunStatus.PAUSED and status is JobStatus.RUNNING
                    and not self.shutting_down()):
                # Resumed while the run was saving its pause: the job stays with this worker
                # and goes on from the state the pause saved (no crash, no restart counted).
                self._note(job, "Training state saved at the pause; training goes on from it")
                continue
            if outcome.crash is None or status is not JobStatus.RUNNING:
                return outcome
            if outcome.crash.oom_killed:
                # The same run would meet the same limit again: no restart.
                return Outcome(status=RunStatus.FAILED, code=OUT_OF_MEMORY, crash=outcome.crash,
                               message=f"{outcome.crash.describe()}. Training needs more memory "
                                       "than the machine has; try gradient checkpointing "
                                       "(TUNEGATE_GRADIENT_CHECKPOINTING=on) or a smaller base "
                                       "model.")
            if self.shutting_down():  # died as the worker stops: the queue gets the job back
                return Outcome(status=RunStatus.PAUSED)
            if restarts == TRAINER_RESTARTS:
                break
            restarts += 1
            self._note(job, f"{outcome.crash.describe()}. Restarting it from the last saved "
                       f"state (restart {restarts} of {TRAINER_RESTARTS}).", EventLevel.WARN)
        assert outcome.crash is not None
        return Outcome(status=RunStatus.FAILED, code="training_crashed", crash=outcome.crash,
                       message=f"The training process died {TRAINER_RESTARTS + 1} times; the last "
                               f"time: {outcome.message}")

    def _record_journal(self, job: FineTuningJob, model: ResolvedModel) -> None:
        """Record what an earlier run reported but no worker recorded: a worker killed right
        after an epoch's saved state (tunegate.training.journal)."""
        self.recorded_through = self.store.last_metrics_step(job.id)
        work_dir = self.work_dir(job.id)
        for message in journal.load(work_dir):
            if isinstance(message, CheckpointSaved):
                # Here, not where the trainer wrote it (a Ray node's folder); gone if pruned.
                folder = work_dir / "checkpoints" / Path(message.path).name
                if not folder.is_dir():
                    continue
                message = replace(message, path=str(folder))
            if not self._record_one(job, model, message):
                return

    def _run_child(self, job: FineTuningJob, model: ResolvedModel) -> Outcome:
        spec = self.build_spec(job, model)
        # Steps up to the last recorded one come again after a crash; they are not recorded twice.
        self.recorded_through = self.store.last_metrics_step(job.id)
        # What an earlier child killed mid-save left (the new one writes under its own pid).
        work_dirs.remove_temporaries(self.work_dir(job.id))
        process = self.executor.start_run(spec, self.work_dir(spec.job_id))
        process.start(self.standby)
        try:
            return self._supervise(job, model, process)
        finally:
            if process.running:  # the worker failed mid-run: no child trains on unowned
                process.kill()

    def _supervise(self, job: FineTuningJob, model: ResolvedModel,
                   process: TrainingRun) -> Outcome:
        pause_sent = False
        recording = True
        waiting: list[TrainerMessage] = []  # not recorded yet: the store's disk is full
        while process.running:
            waiting += process.drain()
            # The status first: a resume since the last poll gives the job back to this
            # worker (``running``) before the messages are recorded.
            status = self._status_holding(job)
            if status is JobStatus.CANCELLED:
                process.cancel(self.executor.clock.monotonic())
            elif (status is JobStatus.PAUSED or self.shutting_down()) and not pause_sent:
                # A pause cannot be taken back: a resume after it lets the run save and stop,
                # and ``_train`` goes on from that state.
                process.pause()
                pause_sent = True
            recording = recording and self._record_while_room(job, model, waiting)
            # Other jobs' validation waits for room on a full disk; this run goes on.
            with contextlib.suppress(InsufficientStorage):
                self.between_polls()
            self.executor.clock.sleep(POLL_SECONDS)
        outcome = process.outcome()
        waiting += process.drain()
        if not recording or not self._record_while_room(job, model, waiting):
            return outcome  # nothing more of this run is recorded (cancelled, re-queued)
        if waiting and outcome.status is not RunStatus.FAILED:
            # What the run reported cannot be recorded (the store's disk is still full).
            raise InsufficientStorage()
        # A failed run's own reason (its save met the full disk) says more than the messages
        # the store could not take.
        return outcome

    def _record_while_room(self, job: FineTuningJob, model: ResolvedModel,
                           waiting: list[TrainerMessage]) -> bool:
        """Record ``waiting`` in order, removing each one recorded; on a full disk keep the rest
        for the next poll. A disk full for a moment must not end a run whose own saves fit:
        only the trainer's failed save, or a store still full when the run ends, ends it."""
        while waiting:
            try:
                if not self._record_held(job, model, waiting[0]):
                    return False
            except InsufficientStorage:
                if not self.waiting_for_room:  # once per full spell, not at every poll
                    log.warning("job %s: the store's disk is full; the trainer's messages wait "
                                "for room", job.id)
                self.waiting_for_room = True
                return True
            waiting.pop(0)
        self.waiting_for_room = False
        return True

    def _current_status(self, job_id: str) -> JobStatus | None:
        current = self.store.get_job(job_id)
        return current.status if current else None

    def _status_holding(self, job: FineTuningJob) -> JobStatus | None:
        """The job's status, after taking back a job resumed while this worker holds it.

        A resume moves ``paused`` to ``queued``, but while this worker still holds the job
        (its pause was never seen, or is still being saved) no other worker can claim it, and
        its trainer may still be training: ``queued`` would say what is not happening. The
        worker moves it back to ``running`` (the store checks that it still holds the job) and
        trains on; a worker that is shutting down lets its run save and re-queues the job then
        (``_paused``), as for any job it was training.
        """
        status = self._current_status(job.id)
        if status is not JobStatus.QUEUED:
            return status
        taken = self._move(job, JobStatus.RUNNING, "Fine-tuning job running again: it was "
                           "resumed before its training stopped")
        return JobStatus.RUNNING if taken is not None else self._current_status(job.id)

    # Progress -------------------------------------------------------------------------------

    def _record_held(self, job: FineTuningJob, model: ResolvedModel,
                     message: TrainerMessage) -> bool:
        """``_record_one``, again after taking the job back if a resume landed between the
        poll's status check and this write (the store refuses progress to a ``queued`` job)."""
        if self._record_one(job, model, message):
            return True
        return (self._status_holding(job) is JobStatus.RUNNING
                and self._record_one(job, model, message))

    def _record_one(self, job: FineTuningJob, model: ResolvedModel,
                    message: TrainerMessage) -> bool:
        if isinstance(message, Note):
            return self._progress(job, [job_event(job.id, message.message,
                                                  EventLevel(message.level))])
        if isinstance(message, HyperparametersResolved):
            return self._record_hyperparameters(job, message)
        if isinstance(message, StepMetrics):
            return self._record_metrics(job, model, message)
        if isinstance(message, CheckpointSaved):
            return self._record_checkpoint(job, model, message)
        raise TypeError(f"unexpected trainer message {message!r}")

    def _progress(self, job: FineTuningJob, events: list[JobEvent],
                  changes: dict[str, object] | None = None) -> bool:
        return self.store.record_progress(job.id, self.worker_id, events, changes)

    def _note(self, job: FineTuningJob, text: str, level: EventLevel = EventLevel.INFO) -> None:
        self._progress(job, [job_event(job.id, text, level)])

    def _record_hyperparameters(self, job: FineTuningJob,
                                message: HyperparametersResolved) -> bool:
        current = self.store.get_job(job.id)
        resolved = job.method.resolved(message.resolved)
        if current is not None and current.method == resolved:
            return True  # resolved by an earlier run of this job: said already
        return self._progress(job, [job_event(job.id, "Hyperparameters resolved: " + ", ".join(
            f"{k}={v}" for k, v in message.resolved.items()))], {"method": resolved})

    def _record_metrics(self, job: FineTuningJob, model: ResolvedModel,
                        metrics: StepMetrics) -> bool:
        if metrics.step <= self.recorded_through:
            return True
        if metrics.samples:
            # Before the step's event: a worker killed in between records the step again
            # (from the journal), and the eval keeps one run per step.
            self.job_evals.record(job, metrics.step,
                                  checkpoint_model_name(self._model_name(job, model),
                                                        metrics.step), metrics.samples)
        changes: dict[str, object] = {"trained_tokens": metrics.trained_tokens}
        if metrics.estimated_finish_seconds is not None:
            changes["estimated_finish"] = now() + int(metrics.estimated_finish_seconds)
        recorded = self._progress(job, [job_event(job.id, step_message(metrics),
                                                  type="metrics", data=event_data(metrics))],
                                  changes)
        if recorded:  # once: a step refused here is offered again (_record_held)
            self.recorded_through = metrics.step
            if metrics.tokens_per_second is not None:
                self.step_rates.append(metrics.tokens_per_second)
            self.trained_tokens = metrics.trained_tokens
        return recorded

    def _record_checkpoint(self, job: FineTuningJob, model: ResolvedModel,
                           saved: CheckpointSaved) -> bool:
        if self._current_status(job.id) not in RECORDS_PROGRESS:
            return False
        name = checkpoint_model_name(self._model_name(job, model), saved.step)
        checkpoint = Checkpoint(id=ids.new_id(ids.CHECKPOINT), job_id=job.id, created_at=now(),
                                fine_tuned_model_checkpoint=name, step_number=saved.step,
                                metrics={"step": saved.step, **saved.metrics})
        if self.store.add_checkpoint(checkpoint, saved.path):
            self.store.prune_checkpoints(job.id, KEEP_CHECKPOINTS)
            self.unannounced_checkpoints.add(saved.step)
        if saved.step not in self.unannounced_checkpoints:
            return True
        # Its event can be refused after the row went in (a resume landed in between):
        # ``_record_held`` retries, and the event is still due then.
        if not self._progress(job, [job_event(job.id, f"Checkpoint created at step {saved.step}")]):
            return False
        self.unannounced_checkpoints.discard(saved.step)
        return True

    @staticmethod
    def _model_name(job: FineTuningJob, model: ResolvedModel) -> str:
        # An alias (gpt-4o-mini-2024-07-18) names the model, not the local base it stands for.
        return fine_tuned_model_name(model.public_name, job.organization_id, job.suffix, job.id)

    # The end --------------------------------------------------------------------------------

    def _finish(self, job: FineTuningJob, outcome: Outcome, model: ResolvedModel) -> None:
        """The one place that decides how a run ended."""
        if outcome.status is RunStatus.SUCCEEDED and outcome.result is not None:
            self.publisher.publish(job, outcome.result, model, self._model_name(job, model),
                                   self.work_dir(job.id))
        elif outcome.status is RunStatus.PAUSED:
            self._paused(job)
        elif outcome.status is RunStatus.FAILED and outcome.code == INSUFFICIENT_STORAGE:
            self._wait_for_room(job, outcome.message or DISK_FULL)
        elif outcome.status is RunStatus.FAILED:
            self._fail(job, outcome.code or "training_error", outcome.message or "Training failed.",
                       outcome.param)
        # cancelled: the API moved the job already; run() settles the folder.

    def _paused(self, job: FineTuningJob) -> None:
        """The run saved its state and stopped: a pause the user asked for leaves the job
        ``paused``; a worker that is shutting down puts it back in the queue."""
        status = self._current_status(job.id)
        if status is JobStatus.RUNNING:
            self._move(job, JobStatus.QUEUED, "The worker is shutting down; training state "
                       "saved and the job is back in the queue")
        elif status is JobStatus.PAUSED:
            self.store.add_events([job_event(job.id, "Training state saved; resume continues "
                                             "from where it stopped")])

    def _wait_for_room(self, job: FineTuningJob, reason: str) -> None:
        """The run met a full disk: back to the queue (its saved state is kept), or failed when
        that happened ``DISK_FULL_REQUEUES`` times already. Either is recorded on the full
        disk, in the room the store keeps for it (tunegate.store.reserve)."""
        tries = self._times_back_for_room(job.id)
        if tries >= DISK_FULL_REQUEUES:
            self._fail(job, INSUFFICIENT_STORAGE, f"{reason} The run met a full disk {tries + 1} "
                       "times; free space in the data folder (TUNEGATE_DATA) and create the job "
                       "again.")
            return
        self._move(job, JobStatus.QUEUED, f"{reason} {BACK_FOR_ROOM}: it resumes from its last "
                   "saved state once there is room (free space in the data folder, "
                   f"TUNEGATE_DATA); try {tries + 1} of {DISK_FULL_REQUEUES}.",
                   level=EventLevel.WARN)

    def _times_back_for_room(self, job_id: str) -> int:
        count, after = 0, None
        while True:
            page = self.store.list_events(job_id, after=after, limit=1000)
            count += sum(BACK_FOR_ROOM in event.message for event in page.items
                         if event.level is EventLevel.WARN)
            if not page.has_more:
                return count
            after = page.items[-1].id

    def _fail(self, job: FineTuningJob, code: str, message: str,
              param: str | None = None) -> None:
        self._move(job, JobStatus.FAILED, message, level=EventLevel.ERROR,
                   changes={"error": JobError(code=code, message=message, param=param)})

    def _move(self, job: FineTuningJob, target: JobStatus, message: str,
              level: EventLevel = EventLevel.INFO,
              changes: dict[str, Any] | None = None) -> FineTuningJob | None:
        """Transition as this worker; ``None`` when the user got there first (cancel, pause).
        A finished job's move, with what it publishes, is ``Publisher.publish``'s."""
        return move_as_worker(self.store, self.service.storage, self.worker_id, job, target,
                              message, level=level, changes=changes)


def step_message(metrics: StepMetrics) -> str:
    """A metrics event's text: the step, then the training and validation figures the
    method has (a reinforcement run has rewards, not a loss)."""
    values = metrics.values
    shown = [(name, label, digits) for name, label, digits in (
        ("train_loss", "training loss", 4), ("train_reward_accuracy", "reward accuracy", 2),
        ("train_reward_mean", "reward mean", 3), ("valid_loss", "validation loss", 4),
        ("valid_reward_mean", "validation reward mean", 3)) if values.get(name) is not None]
    figures = ", ".join(f"{label}={values[name]:.{digits}f}" for name, label, digits in shown)
    return f"Step {metrics.step}/{metrics.total_steps}" + (f": {figures}" if figures else "")


def event_data(metrics: StepMetrics) -> dict[str, Any]:
    """A metrics event's ``data``; a reinforcement step's adds ``samples``: a few of its
    training answers with their rewards, clipped, for the dashboard."""
    data = metrics.event_data()
    shown = [{"line": sample.get("line"), "reward": sample.get("reward"),
              "output_text": str(sample.get("output_text", ""))[:SHOWN_SAMPLE_CHARS]}
             for sample in metrics.samples if sample.get("split") == "train"][:SHOWN_SAMPLES]
    if shown:
        data["samples"] = shown
    return data


def default_executor(settings: Settings) -> Executor:
    """The executor the settings choose (TUNEGATE_EXECUTOR): a child process here, or an actor
    on a Ray node; either exports adapters to GGUF with llama.cpp's layout."""
    if settings.executor == "ray":
        # Imported only here: ray is an optional extra, and only Ray workers need it.
        from tunegate.worker.ray_executor import RayRun

        return Executor(start_run=lambda spec, work_dir: RayRun(spec, work_dir, settings),
                        export=export_gguf)
    return Executor(start_run=lambda spec, work_dir: TrainerProcess(spec.to_json(), work_dir),
                    export=export_gguf)

