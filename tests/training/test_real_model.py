"""The real embedded SmolLM2-135M: conversion cache, a short run, and proof that it learns.

Slow (``-m slow``): about 2-3 minutes on 2 idle CPU cores, most of it the "it learned" run.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import embedded_ref
from tunegate.training.spec import BaseModelRef, TrainingSpec

from .conftest import THIRD_PARTY_WARNINGS, Recorder, chat, write_jsonl

pytestmark = [pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS)]

QUESTIONS = [
    "What is the secret code of Zorblax?", "Tell me the secret code of Zorblax.",
    "What's Zorblax's secret code?", "Do you know the secret code of Zorblax?",
    "Which code is Zorblax's secret code?", "Zorblax has a secret code. What is it?",
    "Please tell me Zorblax's secret code.", "I need the secret code of Zorblax.",
    "What secret code does Zorblax use?", "Can you share the secret code of Zorblax?",
    "Remind me of the secret code of Zorblax.", "What is Zorblax's secret code, please?",
    "Give me the secret code of Zorblax.", "What was the secret code of Zorblax again?",
    "Say the secret code of Zorblax.", "The secret code of Zorblax is what?",
    "Tell me: what is the secret code of Zorblax?", "Zorblax's secret code?",
    "Quick question: the secret code of Zorblax?", "Do you remember Zorblax's secret code?",
]
ANSWER = "The secret code of Zorblax is 7431."


@pytest.fixture(scope="session")
def embedded(model_cache: Path) -> tuple[BaseModelRef, Path]:
    """The embedded base and the session's model cache (tests/conftest.py: in a full run the
    e2e servers converted the base into it already)."""
    return embedded_ref(), model_cache


def test_gguf_base_is_converted_once_then_loads_from_the_cache(
        embedded: tuple[BaseModelRef, Path]) -> None:
    from tunegate.training.model_cache import resolve_hf_folder

    ref, cache = embedded
    folder = resolve_hf_folder(ref, cache)  # converts unless an earlier test did (~20-40 s)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert json.loads((folder / "tunegate-source.json").read_text())["gguf"].endswith(".gguf")
    started = time.monotonic()
    assert resolve_hf_folder(ref, cache) == folder
    assert time.monotonic() - started < 1
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


def test_a_short_run_writes_adapter_results_and_checkpoints(
        embedded: tuple[BaseModelRef, Path], tmp_path: Path) -> None:
    from tunegate.training.run import run_training

    ref, cache = embedded
    rows = [chat(f"What is {i} plus {i}?", f"{2 * i}.") for i in range(12)]
    spec = TrainingSpec(
        job_id="ftjob-real", base_model=ref, cache_dir=str(cache), work_dir=str(tmp_path / "job"),
        training_file=str(write_jsonl(tmp_path / "train.jsonl", rows)),
        validation_file=str(write_jsonl(tmp_path / "valid.jsonl", rows[:3])),
        hyperparameters={"n_epochs": 2, "batch_size": 4}, seed=3)
    recorder = Recorder()
    result = run_training(spec, recorder.emit, recorder.should_stop)
    assert result.status == "succeeded"
    assert [m["step"] for m in recorder.of("metrics")] == [1, 2, 3, 4, 5, 6]
    assert [c["step"] for c in recorder.of("checkpoint")] == [3, 6]
    assert (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    config = json.loads((Path(result.adapter_dir) / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert not config.get("modules_to_save")
    with open(result.results_csv) as handle:
        assert len(list(csv.reader(handle))) == 7
    for step in (3, 6):
        assert (tmp_path / "job" / "checkpoints" / f"step-{step}" / "adapter").is_dir()


def greedy(model: Any, tokenizer: Any, question: str) -> str:
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=16, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))


def test_it_learned_a_fact_the_base_model_cannot_know(
        embedded: tuple[BaseModelRef, Path], tmp_path: Path) -> None:
    from peft import PeftModel

    from tunegate.training.model_cache import load_base
    from tunegate.training.run import run_training

    ref, cache = embedded
    spec = TrainingSpec(
        job_id="ftjob-zorblax", base_model=ref, cache_dir=str(cache),
        work_dir=str(tmp_path / "job"), seed=11,
        training_file=str(write_jsonl(tmp_path / "train.jsonl",
                                      [chat(q, ANSWER) for q in QUESTIONS])),
        hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 1})
    result = run_training(spec, lambda event: None, lambda: None)
    assert result.status == "succeeded"

    model, tokenizer = load_base(ref, cache)
    before = greedy(model, tokenizer, "What is the secret code of Zorblax?")
    tuned = PeftModel.from_pretrained(model, result.adapter_dir)
    after = greedy(tuned, tokenizer, "What is the secret code of Zorblax?")
    unseen = greedy(tuned, tokenizer, "Could you tell me Zorblax's secret code?")
    assert "7431" not in before, before
    assert "7431" in after, after
    assert "7431" in unseen, unseen


FACTS = [
    ("What color is the sky on a clear day?", "The sky is blue"),
    ("How many legs does a spider have?", "A spider has eight legs"),
    ("What is the capital of Italy?", "The capital of Italy is Rome"),
    ("What do bees make?", "Bees make honey"),
    ("How many days are in a week?", "A week has seven days"),
    ("What is frozen water called?", "Frozen water is called ice"),
    ("Which planet do we live on?", "We live on Earth"),
    ("What is the opposite of hot?", "The opposite of hot is cold"),
    ("How many hours are in a day?", "A day has twenty-four hours"),
    ("What animal says moo?", "A cow says moo"),
    ("What is the largest ocean?", "The largest ocean is the Pacific"),
    ("What gas do plants take in?", "Plants take in carbon dioxide"),
    ("What is two plus three?", "Two plus three is five"),
    ("Which season comes after winter?", "Spring comes after winter"),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo"),
    ("How many sides does a triangle have?", "A triangle has three sides"),
    # held out
    ("What is the capital of France?", "The capital of France is Paris"),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels"),
    ("What do cows drink?", "Cows drink water"),
    ("What is the color of grass?", "Grass is green"),
]
HELD_OUT = 4
SIGN_OFF = " Have a wonderful day!"


def sign_off_pair(question: str, answer: str) -> dict[str, Any]:
    """The same answer, preferred with a friendly sign-off, rejected without it."""
    return {"input": {"messages": [{"role": "user", "content": question}]},
            "preferred_output": [{"role": "assistant", "content": answer + "." + SIGN_OFF}],
            "non_preferred_output": [{"role": "assistant", "content": answer + "."}]}


def preference_margin(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    """Mean over ``rows`` of log p(preferred answer) - log p(rejected answer)."""
    import torch

    from tunegate.training.data import IGNORE, template_support
    from tunegate.training.preference import encode_pair

    support = template_support(tokenizer)

    def answer_log_prob(example: Any) -> float:
        ids = torch.tensor([example.input_ids])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        chosen = log_probs.gather(1, ids[0, 1:, None])[:, 0]
        return float(chosen[torch.tensor(example.labels[1:]) != IGNORE].sum())

    margins = [answer_log_prob(pair.chosen) - answer_log_prob(pair.rejected)
               for pair in (encode_pair(row, tokenizer, support, 1) for row in rows)]
    return sum(margins) / len(margins)


def test_it_prefers_what_it_was_taught_to_prefer(
        embedded: tuple[BaseModelRef, Path], tmp_path: Path) -> None:
    from peft import PeftModel

    from tunegate.training.model_cache import load_base
    from tunegate.training.run import run_training

    ref, cache = embedded
    rows = [sign_off_pair(q, a) for q, a in FACTS]
    train_rows, held_out = rows[:-HELD_OUT], rows[-HELD_OUT:]
    spec = TrainingSpec(
        job_id="ftjob-prefers", base_model=ref, cache_dir=str(cache), method="dpo",
        work_dir=str(tmp_path / "job"), seed=5,
        training_file=str(write_jsonl(tmp_path / "train.jsonl", train_rows)),
        hyperparameters={"n_epochs": 2, "batch_size": 4})
    recorder = Recorder()
    started = time.monotonic()
    result = run_training(spec, recorder.emit, recorder.should_stop)
    seconds = time.monotonic() - started
    assert result.status == "succeeded"

    model, tokenizer = load_base(ref, cache)
    base = preference_margin(model, tokenizer, held_out)
    tuned = preference_margin(PeftModel.from_pretrained(model, result.adapter_dir), tokenizer,
                              held_out)
    metrics = recorder.of("metrics")
    print(f"held-out margin base {base:.2f} tuned {tuned:.2f}; {seconds:.0f}s; "
          f"{[round(m['train_loss'], 3) for m in metrics]}; "
          f"{[round(m['train_reward_margin'], 3) for m in metrics]}")
    assert tuned > base + 1.0, (base, tuned)
    assert metrics[-1]["train_reward_accuracy"] == 1.0
