"""The real trainer on a disk that fills up while it trains (issue 26): it fails with
``insufficient_storage`` and leaves nothing half written.

Before, the ENOSPC left the save's temporary folder behind (39 MB of half-written state in the
report kept the disk full) and came out as an internal error. Here the disk is a small tmpfs
(tests/small_disk.py) that fills, really, at a chosen moment: when the trainer reports the last
step of an epoch (its checkpoint's save fails), or when it reports that checkpoint (the save of
its resumable state fails; the journal before it still fits).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.small_disk import fill, run_on_small_disk
from tunegate.domain.methods import Method
from tunegate.training.messages import CheckpointSaved, StepMetrics, TrainerMessage
from tunegate.training.spec import BaseModelRef, TrainingSpec

from .conftest import build_tiny_model, build_tokenizer, memorisation_rows, write_jsonl

DISK = 32 << 20
STEPS_PER_EPOCH = 4  # 8 rows, batch 2


def _train_until_the_disk_fills(mount: Path, fills_on: type, leave: int) -> None:
    from tunegate.training.errors import TrainingFailed
    from tunegate.training.run import run_training

    outside = mount.parent  # the machine's disk: the base model and data are read from there
    base = outside / "tiny-base"
    tokenizer = build_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    work = mount / "jobs" / "ftjob-full"
    spec = TrainingSpec(
        job_id="ftjob-full", base_model=BaseModelRef("tiny", "hf", str(base)),
        training_file=str(write_jsonl(outside / "train.jsonl", memorisation_rows(8))),
        validation_file=None, work_dir=str(work), cache_dir=str(outside / "models"),
        method=Method.of("supervised", {"n_epochs": 2, "batch_size": 2}), seed=42,
        max_seq_len=256)
    filled: list[Path] = []

    def emit(message: TrainerMessage) -> None:
        step = getattr(message, "step", None)
        if isinstance(message, fills_on) and step == STEPS_PER_EPOCH and not filled:
            filled.append(fill(mount, leave))

    with pytest.raises(TrainingFailed) as failed:
        run_training(spec, emit, lambda: None)
    assert filled, "the disk never filled"
    assert failed.value.code == "insufficient_storage"
    assert "data folder filled up" in failed.value.message
    half_written = [str(path.relative_to(work)) for path in work.rglob("*")
                    if any(part.startswith(".") for part in path.relative_to(work).parts)]
    assert half_written == []


def scenario_the_checkpoint_does_not_fit(mount: Path) -> None:
    _train_until_the_disk_fills(mount, StepMetrics, leave=0)


def scenario_the_resumable_state_does_not_fit(mount: Path) -> None:
    _train_until_the_disk_fills(mount, CheckpointSaved, leave=8192)


# model: each scenario trains a tiny model with torch, in a child process that the fast tier's
# guard (tests/tiers.py, this process only) cannot see: a heavy test by what it does.
@pytest.mark.model
@pytest.mark.parametrize("scenario", ["scenario_the_checkpoint_does_not_fit",
                                      "scenario_the_resumable_state_does_not_fit"])
def test_a_save_that_meets_a_full_disk_fails_the_run_and_leaves_nothing_half_written(
        scenario: str, tmp_path: Path) -> None:
    run_on_small_disk(__name__, scenario, tmp_path, DISK, timeout=300)


def test_a_full_disk_while_the_base_loads_is_not_an_unsupported_model(
        tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading writes (transformers' progress bar goes to the run's log): chaos saw a job fail
    with unsupported_base_model "[Errno 28] No space left on device" while the disk was full."""
    from transformers import AutoModelForCausalLM

    from tunegate.training import model_cache

    def fake_load_onto_a_full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (fake: the progress bar's write)")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_load_onto_a_full_disk)
    with pytest.raises(OSError) as raised:
        model_cache.load_model(BaseModelRef("tiny", "hf", str(tiny_base)), tmp_path)
    assert raised.value.errno == errno.ENOSPC
