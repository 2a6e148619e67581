"""A method the trainer cannot train fails before anything is loaded: the trainer child reads
its spec before it imports torch, opens the data or touches the base model's weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.domain.methods import Method
from tunegate.training.spec import BaseModelRef, RunStatus, TrainingSpec
from tunegate.worker.trainer_process import TrainerProcess

pytestmark = pytest.mark.server  # it starts a trainer child (torch is never imported in it)


def test_a_value_out_of_bounds_fails_in_the_child_before_the_weights_load(tmp_path: Path) -> None:
    # Neither the base model nor the training file exists: a child that got as far as loading
    # either would fail with another code (or crash) than the hyperparameter's.
    spec = TrainingSpec(job_id="ftjob-early", base_model=BaseModelRef("gone", "hf",
                                                                      str(tmp_path / "no-base")),
                        training_file=str(tmp_path / "no-train.jsonl"),
                        work_dir=str(tmp_path / "job"), cache_dir=str(tmp_path / "cache"),
                        method=Method.of("dpo", {"n_epochs": 2}))
    data = json.loads(spec.to_json())
    data["method"]["dpo"]["hyperparameters"]["beta"] = 3  # what the domain never builds
    process = TrainerProcess(json.dumps(data), Path(spec.work_dir))
    process.start()
    outcome = process.outcome()
    assert (outcome.status, outcome.code, outcome.param, outcome.message) == (
        RunStatus.FAILED, "invalid_hyperparameters", "hyperparameters.beta",
        "beta must be a number in (0, 2], got 3."), process.log_path.read_text()
    assert process.drain() == []  # not one note: no tokenizer, data or weights were read
    assert not (tmp_path / "cache").exists()
