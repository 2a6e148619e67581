"""Pause and resume raced against a training run: the status always says what the worker does.

The trainer is a test fake (``FakeTrainer``) that trains one step every few polls of the worker
and pauses as the real child does: at the end of the step in flight, then saving its state for
a while before it exits. Time is the worker's polls (``FakeClock``: 0.5 s each in production),
so every interleaving here is exact: "1 s" is two polls, "5 s" ten. Before the fix, a resume that
landed before the worker saw the pause left the job ``queued`` while the run trained to its end
(then "not moved to succeeded: ... is queued"); one that landed while the pause was being saved
left it ``queued`` while the trainer still ran. tests/e2e/test_training_sdk.py races the real
server and model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.conftest import chat_lines
from tests.helpers import service_create_job, service_upload
from tests.worker.scripted import stand_in_export
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings
from tunegate.training.messages import CheckpointSaved, StepMetrics, TrainerMessage
from tunegate.training.spec import RunStatus, TrainingResult, TrainingSpec
from tunegate.worker.loop import Worker
from tunegate.worker.training_run import Executor, Outcome

TOTAL_STEPS = 12
STEPS_PER_EPOCH = 4
POLLS_PER_STEP = 3  # a step takes 1.5 s of the worker's polls
POLLS_TO_SAVE = 2  # a pause's state takes 1 s to write after the step in flight
POLLS_PER_SECOND = 2


@dataclass
class Seen:
    """One look at the job, taken at the start of a poll of the worker."""

    poll: int
    status: JobStatus
    trainer_alive: bool
    steps_trained: int
    steps_recorded: int


@dataclass
class Timeline:
    """The user's side: actions due at given polls, and what was seen at each poll."""

    service: Service
    job_id: str
    actions: dict[int, list[Callable[[], object]]]
    poll: int = 0
    seen: list[Seen] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)  # every step any fake run computed
    saved_step: int = 0  # where a fake run's saved state stands
    alive: FakeTrainer | None = None

    def tick(self) -> None:
        """The worker's sleep between two polls: look at the job, act as the user, and let the
        trainer (if one is alive) work for that while."""
        self.poll += 1
        self.look()
        for action in self.actions.pop(self.poll, []):
            action()
        if self.alive is not None and self.alive.running:
            self.alive.work()

    def idle(self) -> bool:
        """Time passes with no trainer alive: the next due actions happen; ``False`` if none."""
        if not self.actions:
            return False
        self.poll = min(self.actions)
        for action in self.actions.pop(self.poll):
            action()
        return True

    def look(self) -> None:
        job = self.service.jobs.get("default", self.job_id)
        self.seen.append(Seen(self.poll, job.status, self.alive is not None and self.alive.running,
                              len(self.trained), len(recorded_steps(self.service, self.job_id))))


class FakeClock:
    """A test fake of the ``time`` module as the training stage uses it: sleeping is one poll
    of the timeline."""

    def __init__(self, timeline: Timeline):
        self.timeline = timeline

    def sleep(self, seconds: float) -> None:
        self.timeline.tick()

    def monotonic(self) -> float:
        return self.timeline.poll / POLLS_PER_SECOND


class FakeTrainer:
    """A test fake of ``TrainerProcess``: no child, no torch. It works while the worker sleeps
    between polls: a step every ``POLLS_PER_STEP`` polls; a pause is honoured at the end of the
    step in flight and takes ``POLLS_TO_SAVE`` polls to save before it exits ``paused``; a new
    one starts from the saved step, as the real trainer resumes."""

    def __init__(self, timeline: Timeline, spec: TrainingSpec):
        self.timeline = timeline
        self.work_dir = Path(spec.work_dir)
        self.step = timeline.saved_step
        self.polls = 0
        self.pause_requested = False
        self.cancel_requested = False
        self.saving_for: int | None = None
        self.final: Outcome | None = None
        self.reported: list[TrainerMessage] = []  # not drained yet

    def start(self, standby: object = None) -> None:
        self.timeline.alive = self

    @property
    def running(self) -> bool:
        return self.final is None

    def pause(self) -> None:
        self.pause_requested = True

    def cancel(self, now: float) -> None:
        self.cancel_requested = True

    def kill(self) -> None:
        self.final = Outcome(RunStatus.FAILED, code="killed", message="killed")

    def outcome(self) -> Outcome:
        assert self.final is not None
        return self.final

    def drain(self) -> list[TrainerMessage]:
        drained, self.reported = self.reported, []
        return drained

    def work(self) -> None:
        """One poll's worth of training, pausing or cancelling."""
        if self.cancel_requested:
            self.final = Outcome(RunStatus.CANCELLED)
        elif self.saving_for is not None:
            self.saving_for -= 1
            if self.saving_for == 0:
                self.timeline.saved_step = self.step
                self.final = Outcome(RunStatus.PAUSED, TrainingResult(
                    RunStatus.PAUSED, None, 10 * self.step, None, {}))
        else:
            self.polls += 1
            if self.polls == POLLS_PER_STEP:
                self.polls = 0
                self.reported += self._train_step()

    def _train_step(self) -> list[TrainerMessage]:
        self.step += 1
        self.timeline.trained.append(self.step)
        messages: list[TrainerMessage] = [StepMetrics(
            step=self.step, total_steps=TOTAL_STEPS, trained_tokens=10 * self.step,
            values={"train_loss": 1.0 / self.step})]
        if self.step % STEPS_PER_EPOCH == 0:
            folder = self.work_dir / "checkpoints" / f"step-{self.step}"
            (folder / "adapter").mkdir(parents=True)
            messages.append(CheckpointSaved(self.step, str(folder), {"train_loss": 0.5}))
        if self.step == TOTAL_STEPS:
            adapter = self.work_dir / "adapter"
            adapter.mkdir(parents=True, exist_ok=True)
            self.final = Outcome(RunStatus.SUCCEEDED, TrainingResult(
                RunStatus.SUCCEEDED, str(adapter), 10 * self.step, None, {}))
        elif self.pause_requested:
            self.saving_for = POLLS_TO_SAVE
        return messages


@pytest.fixture
def service(settings: Settings) -> Service:
    return build_service(replace(settings, heartbeat_timeout=3600))


def recorded_steps(service: Service, job_id: str) -> list[int]:
    events = service.store.list_events(job_id, after=None, limit=500).items
    return sorted(e.data["step"] for e in events if e.type == "metrics" and e.data)


def messages(service: Service, job_id: str) -> list[str]:
    return [e.message for e in reversed(service.store.list_events(job_id, after=None,
                                                                  limit=500).items)]


def run_with(service: Service,
             script: Callable[[Service, str], dict[int, list[Callable[[], object]]]]) -> Timeline:
    """Train a job with the fake trainer while the user acts as ``script`` says (by poll);
    the worker goes on until the job ends or nothing is left to happen."""
    job_id = service_create_job(service, service_upload(service, chat_lines(12)))
    timeline = Timeline(service, job_id, script(service, job_id))
    worker = Worker(service, executor=fakes(timeline))
    assert worker.run_once()  # files validated: queued
    for _ in range(50):
        if not worker.run_once() and not timeline.idle():
            break
    return timeline


def fakes(timeline: Timeline) -> Executor:
    """Runs are ``FakeTrainer``s paced by the timeline's clock; exports are stand-ins."""
    return Executor(start_run=lambda spec, work_dir: FakeTrainer(timeline, spec),
                    export=stand_in_export, clock=FakeClock(timeline))


def pause(service: Service, job_id: str) -> Callable[[], object]:
    return lambda: service.jobs.pause("default", job_id)


def resume(service: Service, job_id: str) -> Callable[[], object]:
    return lambda: service.jobs.resume("default", job_id)


def check_the_run(timeline: Timeline) -> None:
    """Whatever the interleaving: never ``queued`` while a trainer of the job is alive, every
    step the trainer reported is recorded when the next poll looks (while the job shows it
    running or pausing), each step is trained and recorded once, and the job succeeds."""
    service, job_id = timeline.service, timeline.job_id
    for seen in timeline.seen:
        assert not (seen.trainer_alive and seen.status is JobStatus.QUEUED), (
            f"poll {seen.poll}: the job shows queued while its trainer runs", timeline.seen)
        if seen.status in (JobStatus.RUNNING, JobStatus.PAUSED):
            assert seen.steps_recorded == seen.steps_trained, (
                f"poll {seen.poll}: trained steps are missing from the job", timeline.seen)
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.SUCCEEDED, (job.error, messages(service, job_id))
    steps = list(range(1, TOTAL_STEPS + 1))
    assert timeline.trained == steps  # none trained twice, none skipped
    assert recorded_steps(service, job_id) == steps
    checkpoints = service.store.list_checkpoints(job_id, after=None, limit=10).items
    assert sorted(c.step_number for c in checkpoints) == [4, 8, 12]
    assert sorted(text for text in messages(service, job_id)
                  if text.startswith("Checkpoint created")) == [
        "Checkpoint created at step 12", "Checkpoint created at step 4",
        "Checkpoint created at step 8"]


PAUSE_AT = 5  # the middle of step 2: the pause takes effect at its end, after a poll or two


@pytest.mark.parametrize("seconds", [0, 1, 5])
def test_resume_any_time_after_pause_keeps_the_status_true(
        service: Service, seconds: int) -> None:
    """0 s: resumed before the worker saw the pause; 1 s: while the pause was being saved;
    5 s: after the run stopped and the worker let the job go."""
    def script(service: Service, job_id: str) -> dict[int, list[Callable[[], object]]]:
        if seconds == 0:
            return {PAUSE_AT: [pause(service, job_id), resume(service, job_id)]}
        return {PAUSE_AT: [pause(service, job_id)],
                PAUSE_AT + seconds * POLLS_PER_SECOND: [resume(service, job_id)]}

    timeline = run_with(service, script)
    check_the_run(timeline)
    assert "Fine-tuning job resumed, moving job to queued state" in messages(
        service, timeline.job_id)


@pytest.mark.parametrize("gaps", [(0, 1), (1, 1), (2, 1), (0, 3)])
def test_pause_resume_pause_ends_paused_and_a_last_resume_finishes(
        service: Service, gaps: tuple[int, int]) -> None:
    """Pause, resume ``gaps[0]`` polls later, pause again ``gaps[1]`` polls after that: the run
    stops with its state saved and the job rests ``paused``, then a resume finishes it."""
    resume_at = PAUSE_AT + gaps[0]
    pause_again_at = resume_at + gaps[1]
    final_resume_at = pause_again_at + 20 * POLLS_PER_SECOND
    rested: list[JobStatus] = []

    def script(service: Service, job_id: str) -> dict[int, list[Callable[[], object]]]:
        actions: dict[int, list[Callable[[], object]]] = {}
        for poll, action in [(PAUSE_AT, pause(service, job_id)),
                             (resume_at, resume(service, job_id)),
                             (pause_again_at, pause(service, job_id)),
                             (final_resume_at, lambda: rested.append(
                                 service.jobs.get("default", job_id).status)),
                             (final_resume_at, resume(service, job_id))]:
            actions.setdefault(poll, []).append(action)
        return actions

    timeline = run_with(service, script)
    assert rested == [JobStatus.PAUSED]  # the second pause stopped the run it interrupted
    check_the_run(timeline)


def test_a_resume_while_the_worker_shuts_down_leaves_the_job_queued_once_saved(
        service: Service) -> None:
    """The worker is asked to stop as the user pauses and resumes: it saves the run, shows the
    job ``running`` while it does, and only then puts it back in the queue; another worker
    finishes it."""
    job_id = service_create_job(service, service_upload(service, chat_lines(12)))
    stopping: list[bool] = []
    timeline = Timeline(service, job_id, {PAUSE_AT: [
        lambda: stopping.append(True), pause(service, job_id), resume(service, job_id)]})
    worker = Worker(service, executor=fakes(timeline))
    worker.stop_requested = lambda: bool(stopping)
    assert worker.run_once() and worker.run_once()  # validated; trained until it stopped
    assert service.jobs.get("default", job_id).status is JobStatus.QUEUED
    assert service.store.owned_jobs() == []
    assert 0 < timeline.saved_step < TOTAL_STEPS
    assert messages(service, job_id)[-1] == ("The worker is shutting down; training state saved "
                                             "and the job is back in the queue")
    assert Worker(service, executor=fakes(timeline)).run_once()  # another goes on from the state
    check_the_run(timeline)


def test_a_job_the_reaper_requeued_is_not_taken_back_by_its_slow_worker(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose heartbeat went stale may be alive after all. The reaper re-queues its job
    and ends its hold in one transaction: the slow worker, looking between the two, must not
    take the job back as if it had been resumed (that left it ``running`` with no owner, which
    no reaper ever looks at again)."""
    import time

    from tunegate.worker.training_stage import TrainingStage

    job_id = service_create_job(service, service_upload(service, chat_lines(12)))
    Worker(service).run_once()  # queued
    store = service.store
    store.claim_job([JobStatus.QUEUED], "slow", time.time() - 7200)  # its last beat, long ago
    store.transition(job_id, JobStatus.RUNNING, events=[], worker_id="slow")
    slow_stage = TrainingStage(service, "slow")
    job = service.jobs.get("default", job_id)
    transition = store.transition

    def transition_then_the_slow_worker_looks(*args: object, **kwargs: object) -> object:
        moved = transition(*args, **kwargs)  # type: ignore[arg-type]
        slow_stage._status_holding(job)
        return moved

    monkeypatch.setattr(store, "transition", transition_then_the_slow_worker_looks)
    assert Worker(service).reap_stale_jobs() == 1
    assert service.jobs.get("default", job_id).status is JobStatus.QUEUED
    assert store.owned_jobs() == []
