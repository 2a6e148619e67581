"""Scripted training runs for worker tests: a test fake of the executor seam
(``tunegate.worker.training_run``), in the spirit of llm's ``MockModel``. No child, no torch: a
``ScriptedRun`` hands the stage the messages it was given, then ends as its script says. The
real runs are tested in tests/training (the trainer) and tests/e2e (the whole worker)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunegate.training.messages import TrainerMessage
from tunegate.training.spec import RunStatus, TrainingResult, TrainingSpec
from tunegate.worker.models import ResolvedModel
from tunegate.worker.training_run import Executor, Outcome

Ending = Callable[[TrainingSpec, Path], Outcome]


def succeeded(spec: TrainingSpec, work_dir: Path) -> Outcome:
    """A run that trained: its adapter folder written, as the trainer leaves it."""
    adapter = work_dir / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    return Outcome(RunStatus.SUCCEEDED, TrainingResult(RunStatus.SUCCEEDED, str(adapter), 10, None,
                                                       {}))


def ending_with(outcome: Outcome) -> Ending:
    return lambda spec, work_dir: outcome


class ScriptedRun:
    """A ``TrainingRun`` that has ended by the time the stage first looks at it."""

    def __init__(self, spec: TrainingSpec, work_dir: Path, messages: Sequence[TrainerMessage],
                 ending: Ending, start_error: BaseException | None = None):
        self.spec, self.work_dir = spec, work_dir
        self.log_path = work_dir / "trainer.log"
        self.messages = list(messages)
        self.ending = ending
        self.start_error = start_error

    def start(self, standby: object = None) -> None:
        if self.start_error is not None:
            raise self.start_error

    def drain(self) -> list[TrainerMessage]:
        drained, self.messages = self.messages, []
        return drained

    @property
    def running(self) -> bool:
        return False

    @property
    def pid(self) -> int | None:
        return None

    def pause(self) -> None:
        pass

    def cancel(self, now: float) -> None:
        pass

    def kill(self) -> None:
        pass

    def outcome(self) -> Outcome:
        return self.ending(self.spec, self.work_dir)


def stand_in_export(folder: Path, model: ResolvedModel, name: str) -> None:
    """Instead of llama.cpp's GGUF export: a file where the adapter's GGUF goes."""
    (folder / "adapter.gguf").write_bytes(b"stand-in for " + name.encode())


@dataclass
class ScriptedExecutor:
    """Every run it starts ends as ``ending`` says, after handing over ``messages``; it keeps
    the spec of each run (what the stage asked to train)."""

    ending: Ending = succeeded
    messages: Sequence[TrainerMessage] = ()
    start_error: BaseException | None = None
    specs: list[TrainingSpec] = field(default_factory=list)

    def start_run(self, spec: TrainingSpec, work_dir: Path) -> ScriptedRun:
        self.specs.append(spec)
        return ScriptedRun(spec, work_dir, self.messages, self.ending, self.start_error)

    def executor(self) -> Executor:
        return Executor(start_run=self.start_run, export=stand_in_export)
