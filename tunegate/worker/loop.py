"""The worker: claims jobs from the store and moves them along, one at a time.

Stages run in order for each claimed job: ``validating_files`` (cheap, torch-free: the format of
every line, then, when the base's tokenizer is on disk, the examples' lengths in tokens), then
training (the training engine joins here). Ownership is a row field with a heartbeat; a
reaper hands jobs of dead workers back to the queue: at once when the worker ran on this
machine and its process is gone (tunegate.worker.identity), after the heartbeat timeout
otherwise. While no process holds a job, its status says so: a dead worker's ``running`` job is
``queued`` again (with a ``warn`` event), never ``running`` with nobody behind it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from tunegate import logs
from tunegate.domain.datasets import MIN_TRAINING_EXAMPLES, DatasetError, validate_dataset
from tunegate.domain.jobs import EventLevel, FineTuningJob, JobError, JobStatus, job_event
from tunegate.errors import Conflict
from tunegate.graders.endpoint import EndpointModels
from tunegate.store.base import OwnedJob
from tunegate.training import estimate
from tunegate.training.data import LengthTally
from tunegate.training.errors import TrainingFailed
from tunegate.training.length_check import FileTokenizer, check_lengths, file_tokenizer
from tunegate.training.model_cache import cached_folder
from tunegate.worker import memory_plan
from tunegate.worker.heartbeats import beating
from tunegate.worker.host import Host
from tunegate.worker.identity import known_dead, new_worker_id
from tunegate.worker.janitor import SWEEP_SECONDS, Janitor
from tunegate.worker.models import ResolvedModel, resolve_model
from tunegate.worker.moves import move_as_worker
from tunegate.worker.standby import Standby
from tunegate.worker.training_run import Executor
from tunegate.worker.webhook_delivery import WebhookDelivery

log = logging.getLogger("tunegate.worker")
QUEUED_MESSAGE = "Files validated, moving job to queued state"


def alias_notice(model: ResolvedModel) -> str:
    """The ``warn`` event of a job that names an alias: what is trained in its place."""
    return (f"{model.alias} is an alias (setting TUNEGATE_MODEL_ALIASES): this server trains "
            f"its local base model {model.base.id} in its place. The fine-tuned model is named "
            f"after {model.alias} (ft:{model.alias}:…) and runs on {model.base.id}.")


class Worker:
    def __init__(self, service: Host, worker_id: str | None = None,
                 executor: Executor | None = None, eval_models: EndpointModels | None = None):
        self.service = service
        # Where runs happen (None: as the settings say; tests script runs with one of theirs).
        self.executor = executor
        # What eval runs ask for samples (None: the endpoint the settings name).
        self.eval_models = eval_models
        self.store = service.store
        self.settings = service.settings
        self.worker_id = worker_id or new_worker_id()
        self.janitor = Janitor(service)
        self._last_sweep: float | None = None  # the first iteration sweeps
        self.stop_requested: Callable[[], bool] = lambda: False
        # Filled by ``run`` when idle; a direct ``run_once`` (tests) starts children as it goes.
        self.standby: Standby | None = None

    # Loop -----------------------------------------------------------------------------------

    def run(self, stop_requested: Callable[[], bool]) -> None:
        """Work until ``stop_requested()``; sleep ``poll_interval`` when there is nothing to do.

        A plain predicate, not an Event: it is set from a signal handler, where taking the
        Event's lock (which the sleeping main thread holds) would deadlock.
        """
        log.info("worker %s started", self.worker_id)
        self.stop_requested = stop_requested
        # A standby child waits here, where a Ray worker never trains.
        if ("train" in self.settings.worker_stages and self.settings.trainer_standby
                and self.settings.executor == "local"):
            self.standby = Standby()
        if self.settings.executor == "ray" and "train" in self.settings.worker_stages:
            self._join_ray_cluster()
        # Webhooks go out from a thread of their own: a slow receiver never delays a job.
        webhooks = WebhookDelivery(self.settings, self.store)
        webhooks.start()
        try:
            while not stop_requested():
                try:
                    busy = self.run_once()
                except Exception:  # one bad job must not stop the worker
                    log.exception("worker iteration failed")
                    busy = False
                if not busy:
                    if self.standby is not None:  # idle: never competes with a run for CPU
                        self.standby.refill()
                    time.sleep(self.settings.poll_interval)
        finally:
            webhooks.stop()
            if self.standby is not None:
                self.standby.discard()

    def _join_ray_cluster(self) -> None:
        """Fail at start, not on the first job, when Ray is missing or the cluster is not there."""
        try:
            from tunegate.worker.ray_executor import connect
        except ImportError as exc:
            raise RuntimeError("TUNEGATE_EXECUTOR=ray needs Ray on the worker: "
                               "pip install 'tunegate[ray]'") from exc
        connect(self.settings.ray_address)
        log.info("worker %s trains on the Ray cluster at %s", self.worker_id,
                 self.settings.ray_address)

    def run_once(self) -> bool:
        """Do one unit of work (validate files first: it is quick); return whether there was any."""
        self.reap_stale_jobs()
        self._sweep()
        return self.validate_next() or self.evaluate_next() or self.train_next()

    def evaluate_next(self) -> bool:
        """Run one eval run to its end (torch-free: its models answer over HTTP)."""
        if "evaluate" not in self.settings.worker_stages:
            return False
        self.reap_stale_runs()
        run = self.store.evals.claim_run(self.worker_id, time.time())
        if run is None:
            return False
        log.info("claimed eval run %s", run.id)
        from tunegate.worker.eval_stage import EvalStage, heartbeat

        try:
            with heartbeat(self.service, run.id, self.worker_id):
                EvalStage(self.service, self.worker_id, self.eval_models).run(run)
        finally:
            self.store.evals.disown_run(run.id, self.worker_id)
        return True

    def reap_stale_runs(self) -> int:
        """Give up eval runs of dead workers: the next claim resumes them where they stopped."""
        cutoff = time.time() - self.settings.heartbeat_timeout
        reaped = 0
        for run in self.store.evals.owned_runs():
            owner = run.worker_id or ""
            if owner == self.worker_id or known_dead(owner) or run.heartbeat_at is None \
                    or run.heartbeat_at < cutoff:
                reaped += int(self.store.evals.disown_run(run.id, owner))
        return reaped

    def validate_next(self) -> bool:
        if "validate" not in self.settings.worker_stages:
            return False
        job = self.store.claim_job([JobStatus.VALIDATING_FILES], self.worker_id, time.time())
        if job is None:
            return False
        with logs.for_job(job.id):
            log.info("claimed job %s to validate its files", job.id)
            with self._owned(job.id):
                self.validate_files(job)
        return True

    def train_next(self) -> bool:
        if "train" not in self.settings.worker_stages:
            return False
        if not self.store.restore_reserve():
            # The disk has not even room for the store's reserve: a run would only meet the
            # full disk again (a job sent back to wait for room waits here).
            return False
        job = self.store.claim_job([JobStatus.QUEUED], self.worker_id, time.time())
        if job is None:
            return False
        from tunegate.worker.training_stage import TrainingStage  # needs the training extra

        with logs.for_job(job.id), self._owned(job.id):
            # With many workers on one store, the logs say which one ran what.
            log.info("claimed job %s to train it", job.id)
            TrainingStage(self.service, self.worker_id, between_polls=self.validate_next,
                          shutting_down=self.stop_requested, standby=self.standby,
                          executor=self.executor).run(job)
        return True

    @contextlib.contextmanager
    def _owned(self, job_id: str) -> Iterator[None]:
        """Heartbeat while the body works on the job; give the job up afterwards."""
        try:
            with beating(lambda: self.store.heartbeat(job_id, self.worker_id, time.time()),
                         self.settings.heartbeat_timeout, f"job {job_id}"):
                yield
        finally:
            self.store.disown_job(job_id, self.worker_id)

    def _sweep(self) -> None:
        if self._last_sweep is None or time.monotonic() - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = time.monotonic()
            self.janitor.sweep()

    # Reaper ---------------------------------------------------------------------------------

    def reap_stale_jobs(self) -> int:
        """Hand jobs of dead workers back to the queue, and this worker's own that it could not
        give up; return how many."""
        cutoff = time.time() - self.settings.heartbeat_timeout
        reaped = 0
        for owned in self.store.owned_jobs():
            if owned.worker_id == self.worker_id:
                # Called between two jobs, when this worker holds none: a job still in its name
                # is one whose end it could not record (the store's disk was full). No other
                # worker reaps a live worker's job, so this one must, once the store can write.
                why = "The worker could not record how this job's run ended"
            elif known_dead(owned.worker_id):
                why = "The worker running this job died"
            elif owned.heartbeat_at is None or owned.heartbeat_at < cutoff:
                why = "The worker running this job stopped responding"
            else:
                continue
            reaped += self._reap(owned, why)
        return reaped

    def _reap(self, owned: OwnedJob, why: str) -> int:
        job, owner = owned.job, owned.worker_id
        if job.status is JobStatus.RUNNING:
            # Re-queued and given up at once: an owner that is only slow must not find its job
            # ``queued`` and still its own, which is how a resume looks (it would take it back).
            with contextlib.suppress(Conflict):
                self.store.transition(job.id, JobStatus.QUEUED, worker_id=owner, disown=True,
                                      events=[job_event(
                                          job.id, f"{why}; the job is back in the queue and "
                                          "resumes from its last saved state.", EventLevel.WARN)])
                return 1
        return int(self.store.disown_job(job.id, owner))

    # Stage 1: validating_files --------------------------------------------------------------

    def validate_files(self, job: FineTuningJob) -> FineTuningJob | None:
        """Check the job's files line by line; move it to ``queued`` or ``failed``.

        Then, where the base's tokenizer is on disk (:func:`length_tokenizer`), read them as
        the trainer will: a file whose examples are all longer than ``TUNEGATE_MAX_SEQ_LEN``
        (or that the trainer would refuse otherwise) fails here, with the trainer's message.
        """
        checks = [("training_file", job.training_file, MIN_TRAINING_EXAMPLES)]
        if job.validation_file:
            checks.append(("validation_file", job.validation_file, 1))
        model = self._model(job)
        if model is not None and model.alias is not None:
            self.store.add_events([job_event(job.id, alias_notice(model), EventLevel.WARN)])
        for param, file_id, minimum in checks:
            self.store.add_events([job_event(job.id, f"Validating {param.replace('_', ' ')}: "
                                             f"{file_id}")])
            try:
                self._check_file(file_id, job.method.type, minimum)
            except DatasetError as exc:
                return self._fail_validation(job, param, exc.code, exc.message)
        # The length check reads chat and preference files; the trainer reads reinforcement
        # prompts itself (one too long to leave room for an answer is dropped and reported).
        tokenizer = self.length_tokenizer(model) if job.method.grader is None else None
        tally: LengthTally | None = None  # the training file's, for the duration estimate
        if tokenizer is not None:
            for param, file_id, _ in checks:
                try:
                    counted = check_lengths(self.service.storage.path(file_id), tokenizer,
                                            self.settings.max_seq_len, method=job.method.type,
                                            validation=param == "validation_file")
                except TrainingFailed as exc:
                    return self._fail_validation(job, exc.param or param, exc.code, exc.message)
                except Exception:  # a bug here must not keep the job validating forever
                    log.exception("checking the lengths of %s failed; the trainer checks them",
                                  file_id)
                    break
                if param == "training_file":
                    tally = counted
        return self._queue(job, model, tally)

    def _queue(self, job: FineTuningJob, model: ResolvedModel | None,
               tally: LengthTally | None) -> FineTuningJob | None:
        """Move a validated job to ``queued`` with its estimate (an event and
        ``estimated_finish``), or fail it where it cannot fit the configured memory limit."""
        planned = self._plan(model)
        if model is None or planned is None:
            return self._move(job, JobStatus.QUEUED, QUEUED_MESSAGE)
        if not planned.memory.fits and self.settings.trainer_memory_limit is not None:
            # A configured limit is the same when the job would start: no need to wait for it.
            # The memory free now is not (a trainer may be running), so that one is checked
            # when the job starts (tunegate.worker.training_stage).
            message = estimate.refusal(planned.memory, model.base.id)
            return self._move(job, JobStatus.FAILED, message, level=EventLevel.ERROR,
                              changes={"error": JobError(memory_plan.INSUFFICIENT_MEMORY,
                                                         message, None)})
        tokens = memory_plan.tokens_of(tally, job.method) if tally is not None else None
        said, changes = memory_plan.announcement(self.settings, planned, tokens)
        return self._move(job, JobStatus.QUEUED, QUEUED_MESSAGE, changes=changes,
                          extra_events=[said])

    def _plan(self, model: ResolvedModel | None) -> memory_plan.JobPlan | None:
        if model is None:
            return None
        try:
            return memory_plan.plan_job(self.settings, model.ref)
        except Exception:  # a bug here must not keep the job validating forever
            log.exception("no memory plan for %s at validation; the start makes one", model.ref)
            return None

    def _model(self, job: FineTuningJob) -> ResolvedModel | None:
        try:
            return resolve_model(self.settings, self.store, job)
        except LookupError:
            return None  # the training stage reports it

    def length_tokenizer(self, model: ResolvedModel | None) -> FileTokenizer | None:
        """The torch-free tokenizer of the job's base, if it is on disk and exact; ``None``
        leaves the length check to the trainer (which runs it before loading the weights)."""
        if model is None:
            return None
        return file_tokenizer(cached_folder(model.ref, self.settings.model_cache))

    def _check_file(self, file_id: str, method_type: str, minimum: int) -> None:
        path = self.service.storage.path(file_id)
        if not path.is_file():
            raise DatasetError(f"File {file_id} no longer exists.")
        # The upload's line limit, so that a file accepted at upload is read the same way here.
        validate_dataset(path, method_type, min_examples=minimum,
                         max_line_bytes=self.settings.max_line_bytes)

    def _fail_validation(self, job: FineTuningJob, param: str, code: str,
                         detail: str) -> FineTuningJob | None:
        if param == "validation_file" and code == "invalid_training_file":
            code = "invalid_validation_file"
        kind = param.replace("_", " ")
        message = (f"The job failed due to an invalid {kind}. {detail}"
                   if code in ("invalid_training_file", "invalid_validation_file") else detail)
        error = JobError(code=code, message=message, param=param)
        return self._move(job, JobStatus.FAILED, message, level=EventLevel.ERROR,
                          changes={"error": error})

    def _move(self, job: FineTuningJob, target: JobStatus, message: str,
              level: EventLevel = EventLevel.INFO,
              changes: dict[str, object] | None = None,
              extra_events: Sequence[str] = ()) -> FineTuningJob | None:
        """Transition as this worker; ``None`` when the user got there first (e.g. cancel)."""
        return move_as_worker(self.store, self.service.storage, self.worker_id, job, target,
                              message, level=level, changes=changes, extra_events=extra_events)
