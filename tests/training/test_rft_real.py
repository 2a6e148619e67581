"""Reinforcement fine-tuning of the real embedded SmolLM2-135M: the reward rises.

The task ships in tests/data (SOURCES.md): short answers to general-knowledge questions, scored
by a ``python`` grader (1 for at most 10 words, 1/30 less per extra word). The base answers in
30-40 words, so its reward is low but not zero, and GRPO has something to pull on from the
first step. Slow (``-m slow``): about 1.5 minutes on 2 CPU cores. The longer proof (the
fine-tune beats the base on held-out prompts by at least 0.3) is ``bench/rft.py proof``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import embedded_ref
from tunegate.domain.methods import Method
from tunegate.training.spec import TrainingSpec

from .conftest import THIRD_PARTY_WARNINGS, Recorder

pytestmark = [pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS)]

DATA = Path(__file__).resolve().parents[1] / "data"


def test_the_reward_of_short_answers_rises(model_cache: Path, tmp_path: Path) -> None:
    from tunegate.training.run import TrainerOptions, run_training

    grader = json.loads((DATA / "tunegate__rft_short_answers_grader.json").read_text())
    method = Method.of("reinforcement", {"n_epochs": 1, "batch_size": 4, "eval_interval": 3,
                                         "learning_rate_multiplier": 1.0}, grader=grader)
    spec = TrainingSpec(
        job_id="ftjob-rft", base_model=embedded_ref(), cache_dir=str(model_cache),
        work_dir=str(tmp_path / "job"), method=method, seed=1,
        training_file=str(DATA / "tunegate__rft_short_answers_train.jsonl"),
        validation_file=str(DATA / "tunegate__rft_short_answers_valid.jsonl"))
    recorder = Recorder()
    result = run_training(spec, recorder.emit, recorder.should_stop,
                          TrainerOptions(completion_tokens=48, threads=2))

    assert result.status == "succeeded"
    metrics = recorder.of("metrics")
    rewards = [m["train_reward_mean"] for m in metrics]
    assert len(rewards) == 9 and 0 < rewards[0] < 0.4  # low, not zero, at the start
    assert sum(rewards[-3:]) / 3 >= sum(rewards[:2]) / 2 + 0.3, rewards
    lengths = [m["train_completion_length"] for m in metrics]
    assert sum(lengths[-3:]) < sum(lengths[:3]), lengths  # shorter answers: what it rewards
    valid = [m["valid_reward_mean"] for m in metrics if "valid_reward_mean" in m]
    assert len(valid) == 3 and valid[-1] >= 0.6, valid
    assert all(m["train_grader_errors"] == 0 for m in metrics)
