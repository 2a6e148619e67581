"""The seam between the worker's training stage and whatever runs the training: a
:class:`TrainingRun` is one run, started, watched, paused, cancelled or killed, and asked how it
ended. The local executor (``trainer_process.TrainerProcess``, a child process here) and the
Ray executor (``ray_executor.RayRun``, an actor on a cluster node) implement it; tests script one.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

from tunegate.training.messages import Failed, TrainerMessage
from tunegate.training.spec import RunStatus, TrainingResult, TrainingSpec
from tunegate.worker.models import ResolvedModel
from tunegate.worker.standby import Standby

# A cancelled child stops at its next step or is killed after this (the API promises ~5 s).
CANCEL_GRACE_SECONDS = 4.0


@dataclass(frozen=True)
class Crash:
    """How a child died without saying why: its exit, and what memory tells about it."""

    returncode: int
    peak_rss_bytes: int | None  # the child's high-water mark, last seen while it ran
    oom_killed: bool | None  # the kernel's OOM killer fired in our cgroup meanwhile (None: unknown)

    def describe(self) -> str:
        if self.returncode < 0:
            reason = f"was killed by signal {-self.returncode} ({signal.Signals(-self.returncode).name})"
        else:
            reason = f"exited with status {self.returncode}"
        seen = (f"; its memory peaked at {self.peak_rss_bytes / 2**20:.0f} MiB"
                if self.peak_rss_bytes else "")
        if self.oom_killed:
            verdict = "; the kernel's out-of-memory killer stopped it"
        elif self.oom_killed is False:
            verdict = "; the kernel's out-of-memory killer did not fire"
        else:
            verdict = ""
        return f"The training process {reason}{seen}{verdict}"


@dataclass(frozen=True)
class Outcome:
    """How a run ended. ``result`` is set for a child that finished (succeeded, paused,
    cancelled); ``code``/``message`` for one that failed; ``crash`` for one that died."""

    status: RunStatus
    result: TrainingResult | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None  # the request field at fault, for a failure that names one
    crash: Crash | None = None


class StoppedBySignals:
    """How a worker stops a trainer, wherever it runs: SIGUSR1 pauses it (it saves its state and
    exits), SIGTERM asks it to stop at its next step, and a kill follows when that takes longer
    than ``CANCEL_GRACE_SECONDS``. Subclasses deliver the signals (``_signal``, ``kill``)."""

    _cancel_sent_at: float | None = None

    def _signal(self, signum: int) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        self._signal(signal.SIGUSR1)

    def cancel(self, now: float) -> None:
        """Ask politely first; kill when the grace period is over."""
        if self._cancel_sent_at is None:
            self._cancel_sent_at = now
            self._signal(signal.SIGTERM)
        elif now - self._cancel_sent_at > CANCEL_GRACE_SECONDS:
            self.kill()


class TrainingRun(Protocol):
    """One training run as the training stage drives it."""

    log_path: Path

    def start(self, standby: Standby | None = None) -> None:
        """Begin (a local run may take over a standby child that has imported torch)."""

    def drain(self) -> list[TrainerMessage]:
        """The progress messages (metrics, checkpoints, notes) that arrived since the last call."""
        ...

    @property
    def running(self) -> bool: ...

    @property
    def pid(self) -> int | None:
        """The local process's id, where there is one."""
        ...

    def pause(self) -> None:
        """Ask the run to save its state and stop."""

    def cancel(self, now: float) -> None:
        """Ask the run to stop; kill it once ``CANCEL_GRACE_SECONDS`` have passed."""

    def kill(self) -> None: ...

    def outcome(self) -> Outcome:
        """Wait for the run to end and say how it ended."""
        ...


class Clock(Protocol):
    """What paces a run's supervision: ``time`` itself, or a test's clock."""

    def sleep(self, seconds: float, /) -> None: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class Executor:
    """Where and how a job's runs happen, handed to the training stage (``training_stage.
    default_executor`` reads the settings: a child process here, or a Ray actor):
    ``start_run`` makes the run of a spec in its job folder; ``export`` writes a finished
    adapter folder's GGUF beside it (``folder``, the base it was trained on, the model's name);
    ``clock`` paces the polls. Tests give scripted runs and a stand-in export."""

    start_run: Callable[[TrainingSpec, Path], TrainingRun]
    export: Callable[[Path, ResolvedModel, str], None]
    clock: Clock | ModuleType = time


def outcome_of(final: TrainingResult | Failed | None, *, cancelled: bool,
               crash: Callable[[], Crash], log_path: Path) -> Outcome:
    """How a run ended, from the last thing its trainer said: a result (succeeded, paused,
    cancelled), a failure with its reason, or nothing, which is a cancellation when one was
    asked for and otherwise a crash (``crash`` tells how the run died, read only then)."""
    if isinstance(final, TrainingResult):
        return Outcome(status=final.status, result=final)
    if isinstance(final, Failed):
        return Outcome(status=RunStatus.FAILED, code=final.code, message=final.message,
                       param=final.param)
    if cancelled:
        return Outcome(status=RunStatus.CANCELLED)
    died = crash()
    return Outcome(status=RunStatus.FAILED, code="training_crashed",
                   message=f"{died.describe()}; see {log_path}.", crash=died)
