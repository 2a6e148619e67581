"""The worker contract: JSON round-trips, and the modules the API process imports stay torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tunegate.domain.methods import Method
from tunegate.training.errors import TrainingFailed
from tunegate.training.spec import BaseModelRef, TrainingResult, TrainingSpec


def test_spec_round_trips_through_json() -> None:
    spec = TrainingSpec(
        job_id="ftjob-1", base_model=BaseModelRef("SmolLM2-135M-Instruct", "gguf", "/m", "x.gguf"),
        training_file="/f/train.jsonl", validation_file=None,
        method=Method.of("dpo", {"n_epochs": "auto", "batch_size": 4}), seed=7, work_dir="/w",
        cache_dir="/c", max_seq_len=1024, init_adapter="/old/adapter", resume=True)
    assert TrainingSpec.from_json(spec.to_json()) == spec
    assert TrainingSpec.from_json(spec.to_json()).base_model.gguf_file == "x.gguf"
    assert json.loads(spec.to_json())["method"] == spec.method.to_wire()  # OpenAI's shape


def test_a_spec_with_a_value_out_of_bounds_fails_as_the_trainer_always_said() -> None:
    """What a worker of another version, or a hand-edited spec.json, could hand the child."""
    spec = TrainingSpec(job_id="ftjob-1", base_model=BaseModelRef("m", "hf", "/m"),
                        training_file="/f/train.jsonl", work_dir="/w", cache_dir="/c")
    data = json.loads(spec.to_json())
    data["method"]["supervised"]["hyperparameters"]["batch_size"] = 0
    with pytest.raises(TrainingFailed) as caught:
        TrainingSpec.from_json(json.dumps(data))
    assert (caught.value.code, caught.value.param, caught.value.message) == (
        "invalid_hyperparameters", "hyperparameters.batch_size",
        "batch_size must be an integer from 1 to 256, got 0.")


def test_result_round_trips_through_json() -> None:
    result = TrainingResult("succeeded", "/w/adapter", 1234, "/w/results.csv",
                            {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 0.5})
    assert TrainingResult.from_json(result.to_json()) == result


def test_api_side_modules_do_not_import_torch() -> None:
    code = ("import sys\n"
            "import tunegate.training, tunegate.training.spec, tunegate.training.errors\n"
            "import tunegate.training.hyperparams, tunegate.chat.format\n"
            "import tunegate.training.model_cache, tunegate.training.messages\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
