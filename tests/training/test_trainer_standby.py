"""A standby trainer child (imports done ahead) runs the job it is handed, like a fresh one."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tunegate.training.messages import StepMetrics
from tunegate.training.spec import TrainingSpec
from tunegate.worker.standby import Standby
from tunegate.worker.trainer_process import TrainerProcess

pytestmark = pytest.mark.model  # every test runs a trainer child

MakeSpec = Callable[..., TrainingSpec]


def _run(spec: TrainingSpec, standby: Standby | None) -> tuple[TrainerProcess, str]:
    process = TrainerProcess(spec.to_json(), Path(spec.work_dir))
    process.start(standby)
    return process, process.outcome().status


def test_the_waiting_child_is_the_one_that_trains(make_spec: MakeSpec) -> None:
    standby = Standby()
    standby.refill()
    waiting = standby._child
    assert waiting is not None
    process, status = _run(make_spec(hyperparameters={"n_epochs": 1, "batch_size": 2}), standby)
    assert status == "succeeded", process.log_path.read_text()
    assert process.pid == waiting.process.pid
    # Its events came through the pipe it was started with.
    assert any(isinstance(message, StepMetrics) for message in process.drain())
    assert standby._child is None  # adopted: nothing waits any more


def test_a_dead_standby_is_replaced_by_a_fresh_child(make_spec: MakeSpec) -> None:
    standby = Standby()
    standby.refill()
    waiting = standby._child
    assert waiting is not None
    os.kill(waiting.process.pid, signal.SIGKILL)
    waiting.process.wait()
    process, status = _run(make_spec(hyperparameters={"n_epochs": 1, "batch_size": 2}), standby)
    assert status == "succeeded", process.log_path.read_text()
    assert process.pid != waiting.process.pid


def test_a_discarded_standby_is_gone() -> None:
    standby = Standby()
    standby.refill()
    waiting = standby._child
    assert waiting is not None
    standby.discard()
    assert waiting.process.poll() is not None
    standby.discard()  # twice is harmless


def test_refill_keeps_a_live_child_and_replaces_a_dead_one() -> None:
    standby = Standby()
    try:
        standby.refill()
        first = standby._child
        standby.refill()
        assert standby._child is first
        assert first is not None
        first.process.kill()
        first.process.wait()
        standby.refill()
        assert standby._child is not None and standby._child is not first
    finally:
        standby.discard()
