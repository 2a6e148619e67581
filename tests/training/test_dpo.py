"""DPO on the tiny llama: the loss against a hand computation, answer-only masks, and the run
(metrics, checkpoints, CSV, pause/resume, cancel, an ``ft:`` starting point)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import tiers
from tunegate.training.messages import Note
from tunegate.training.spec import TrainingSpec

from .conftest import (
    THIRD_PARTY_WARNINGS,
    Recorder,
    build_tiny_model,
    kill_at_step,
    memorisation_rows,
)

torch = tiers.lazy("torch")
pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

MakeSpec = Callable[..., TrainingSpec]
DPO_METRICS = ["train_loss", "train_reward_accuracy", "train_reward_margin",
               "train_chosen_reward", "train_rejected_reward"]


def preference(user: str, chosen: str, rejected: str, *, legacy: bool = False,
               history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    keys = (("preferred_completion", "non_preferred_completion") if legacy
            else ("preferred_output", "non_preferred_output"))
    return {"input": {"messages": [*(history or []), {"role": "user", "content": user}]},
            keys[0]: [{"role": "assistant", "content": chosen}],
            keys[1]: [{"role": "assistant", "content": rejected}]}


def style_rows(n: int = 8) -> list[dict[str, Any]]:
    """Short answers ending in '!' preferred over the same answer ending in '?'."""
    return [preference(f"What is {i} plus {i}?", f"{2 * i}!", f"{2 * i}?") for i in range(n)]


def train(spec: TrainingSpec, recorder: Recorder | None = None) -> tuple[Any, Recorder]:
    from tunegate.training.run import run_training

    recorder = recorder or Recorder()
    return run_training(spec, recorder.emit, recorder.should_stop), recorder


def dpo_spec(make_spec: MakeSpec, rows: list[dict[str, Any]] | None = None,
             **fields: Any) -> TrainingSpec:
    fields.setdefault("hyperparameters", {"n_epochs": 3, "batch_size": 2, "beta": 0.5,
                                          "learning_rate_multiplier": 2})
    return make_spec(rows or style_rows(), method="dpo", **fields)


# The loss ------------------------------------------------------------------------------------


def test_dpo_loss_and_gradient_equal_a_hand_computation(tiny_tokenizer: Any) -> None:
    from tunegate.training import attention, dpo, lora, trainer
    from tunegate.training.data import IGNORE, Dataset, template_support
    from tunegate.training.preference import encode_pair

    model = build_tiny_model(len(tiny_tokenizer))
    model.set_attn_implementation(attention.register())
    policy = lora.attach_lora(model)
    torch.manual_seed(1)
    with torch.no_grad():  # move the adapter away from zero so policy != reference
        for name, parameter in lora.trainable_parameters(policy).items():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    support = template_support(tiny_tokenizer)
    rows = [preference("What is two plus two?", "Two plus two is four.", "It is five."),
            preference("What is the capital of France?", "Paris.", "The capital is Rome.")]
    pairs = [encode_pair(row, tiny_tokenizer, support, line) for line, row in enumerate(rows, 1)]
    engine = trainer.Engine(policy, torch.device("cpu"), token_budget=512)
    referenced = dpo.with_references(Dataset(pairs, 0, 0, "-"), engine, base_only=True,
                                     should_stop=lambda: None)
    assert referenced is not None
    beta = 0.3
    metrics, tokens = dpo.PreferenceObjective(engine, beta).train_step(referenced.examples,
                                                                         lambda: None)
    ours = {name: p.grad.clone() for name, p in lora.trainable_parameters(policy).items()}
    policy.zero_grad()

    def answer_log_prob(example: Any) -> Any:
        ids = torch.tensor([example.input_ids])
        logits = policy(input_ids=ids).logits[0, :-1]
        chosen = torch.log_softmax(logits.double(), dim=-1).gather(1, ids[0, 1:, None])[:, 0]
        return chosen[torch.tensor(example.labels[1:]) != IGNORE].sum()

    with torch.no_grad(), policy.disable_adapter():
        reference = [(answer_log_prob(p.chosen), answer_log_prob(p.rejected)) for p in pairs]
    losses, margins = [], []
    for pair, (ref_chosen, ref_rejected) in zip(pairs, reference, strict=True):
        chosen = beta * (answer_log_prob(pair.chosen) - ref_chosen)
        rejected = beta * (answer_log_prob(pair.rejected) - ref_rejected)
        losses.append(-torch.nn.functional.logsigmoid(chosen - rejected))
        margins.append(float((chosen - rejected).detach()))
    by_hand = sum(losses) / len(losses)
    by_hand.backward()
    expected = float(by_hand.detach())

    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(math.log(2), rel=1e-3)  # the adapter does matter
    assert metrics["reward_margin"] == pytest.approx(sum(margins) / 2, rel=1e-4, abs=1e-6)
    assert metrics["reward_accuracy"] == sum(m > 0 for m in margins) / 2
    assert tokens == sum(pair.n_tokens for pair in pairs)
    for name, parameter in lora.trainable_parameters(policy).items():
        torch.testing.assert_close(ours[name], parameter.grad.float(), rtol=1e-4, atol=1e-6)


@pytest.mark.model
def test_the_loss_is_log_two_where_policy_and_reference_agree() -> None:
    from tunegate.training.dpo import dpo_loss

    same = torch.tensor([-3.0, -7.5])
    output = dpo_loss(same, same - 1, same, same - 1, beta=0.1)
    torch.testing.assert_close(output.losses, torch.full((2,), math.log(2)))
    output = dpo_loss(torch.tensor([-1.0]), torch.tensor([-4.0]), torch.tensor([-2.0]),
                      torch.tensor([-2.0]), beta=0.5)
    # rewards 0.5 * 1 and 0.5 * -2: loss = -log sigmoid(1.5)
    assert float(output.losses[0]) == pytest.approx(math.log1p(math.exp(-1.5)))
    assert (float(output.chosen_rewards[0]), float(output.rejected_rewards[0])) == (0.5, -1.0)


# The data ------------------------------------------------------------------------------------


def test_only_the_answers_are_trained(tiny_tokenizer: Any) -> None:
    from tunegate.training.data import IGNORE, template_support
    from tunegate.training.preference import encode_pair

    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    row = preference("What is two plus two?", "Four.", "Five!", history=history)
    pair = encode_pair(row, tiny_tokenizer, template_support(tiny_tokenizer), 1)

    def trained(example: Any) -> str:
        return tiny_tokenizer.decode([t for t in example.labels if t != IGNORE])

    assert trained(pair.chosen) == "Four.<|im_end|>"
    assert trained(pair.rejected) == "Five!<|im_end|>"  # the history's "hello" is context only
    prompt = tiny_tokenizer.apply_chat_template(row["input"]["messages"], tokenize=False,
                                                add_generation_prompt=True)
    n_prompt = len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert pair.chosen.input_ids[:n_prompt] == pair.rejected.input_ids[:n_prompt]
    assert all(label == IGNORE for label in pair.chosen.labels[:n_prompt])
    legacy = preference("What is two plus two?", "Four.", "Five!", history=history, legacy=True)
    assert encode_pair(legacy, tiny_tokenizer, template_support(tiny_tokenizer), 1) == pair


def test_a_pair_cut_to_nothing_is_dropped_and_a_bad_line_is_named(
        make_spec: MakeSpec, tiny_tokenizer: Any, tmp_path: Path) -> None:
    from tunegate.training.errors import TrainingFailed
    from tunegate.training.preference import load_preferences

    from .conftest import write_jsonl

    long_prompt = preference("word " * 200, "yes", "no")
    path = write_jsonl(tmp_path / "p.jsonl", [*style_rows(2), long_prompt])
    events: list[Note] = []
    dataset = load_preferences(path, tiny_tokenizer, 64, emit=events.append)
    assert (len(dataset.examples), dataset.n_truncated, dataset.n_dropped) == (2, 1, 1)
    assert "skipped" in events[0].message and "line 3 (" in events[0].message
    broken = write_jsonl(tmp_path / "b.jsonl", [*style_rows(2), {"input": {"messages": []},
                                                                 "preferred_output": "x"}])
    with pytest.raises(TrainingFailed, match="Line 3 of the validation file") as caught:
        load_preferences(broken, tiny_tokenizer, 64, validation=True)
    assert caught.value.code == "invalid_validation_file"


def test_a_preference_file_with_no_pair_within_the_limit_fails_naming_the_longest_side(
        tiny_tokenizer: Any, tmp_path: Path) -> None:
    from tunegate.training.data import file_role
    from tunegate.training.errors import TrainingFailed
    from tunegate.training.preference import iter_pairs, load_preferences

    from .conftest import write_jsonl

    # Line 2's rejected side is the longest sequence of the file.
    rows = [preference("word " * 100, "yes", "no"), preference("word " * 150, "y", "no " * 60)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    pair = list(iter_pairs(path, tiny_tokenizer, file_role(True)))[1]
    assert pair.rejected.n_tokens > pair.chosen.n_tokens
    with pytest.raises(TrainingFailed) as caught:
        load_preferences(path, tiny_tokenizer, 64, validation=True)
    assert (caught.value.code, caught.value.param) == ("invalid_validation_file",
                                                       "validation_file")
    assert "maximum sequence length of 64 tokens (setting TUNEGATE_MAX_SEQ_LEN)" in \
        caught.value.message
    assert f"The longest is line 2 ({pair.rejected.n_tokens} tokens)." in caught.value.message


# The run -------------------------------------------------------------------------------------


def test_a_dpo_run_learns_the_preference_and_reports_it(make_spec: MakeSpec) -> None:
    spec = dpo_spec(make_spec, valid_rows=style_rows(3))
    result, recorder = train(spec)
    assert result.status == "succeeded"
    assert result.hyperparameters == {"n_epochs": 3, "batch_size": 2,
                                      "learning_rate_multiplier": 2.0, "beta": 0.5}
    metrics = recorder.of("metrics")
    assert [m["step"] for m in metrics] == list(range(1, 13))
    assert set(DPO_METRICS) <= set(metrics[0]) and "train_mean_token_accuracy" not in metrics[0]
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference
    assert metrics[-1]["train_loss"] < 0.5 * math.log(2)
    assert metrics[-1]["train_reward_accuracy"] == 1.0
    assert metrics[-1]["train_reward_margin"] > 0
    assert metrics[-1]["full_valid_reward_accuracy"] == 1.0  # held-out pairs too
    assert [c["step"] for c in recorder.of("checkpoint")] == [4, 8, 12]
    assert "valid_reward_margin" in recorder.of("checkpoint")[-1]["metrics"]
    assert any("reference log-probabilities with the base model" in e.get("message", "")
               for e in recorder.of("message"))
    with open(result.results_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", *DPO_METRICS, "valid_loss", "valid_reward_accuracy",
                             "valid_reward_margin", "valid_chosen_reward", "valid_rejected_reward"]
    assert len(rows) == 12 and rows[-1]["valid_reward_accuracy"] != ""


def test_auto_beta_and_learning_rate_are_resolved(make_spec: MakeSpec) -> None:
    spec = dpo_spec(make_spec, style_rows(4), hyperparameters={"n_epochs": 1})
    result, recorder = train(spec)
    assert recorder.of("hyperparameters")[0]["resolved"] == {
        "n_epochs": 1, "batch_size": 1, "learning_rate_multiplier": 0.5, "beta": 0.1}
    assert result.status == "succeeded"


def test_dpo_pause_then_resume_matches_an_uninterrupted_run(make_spec: MakeSpec,
                                                            tmp_path: Path) -> None:
    straight = train(dpo_spec(make_spec))[1]
    work = tmp_path / "paused-dpo"
    paused, before = train(dpo_spec(make_spec, work_dir=work), Recorder(stop_at={5: "pause"}))
    assert paused.status == "paused"
    resumed, after = train(dpo_spec(make_spec, work_dir=work, resume=True))
    assert resumed.status == "succeeded"
    assert [m["step"] for m in after.of("metrics")] == list(range(6, 13))
    assert before.losses() + after.losses() == straight.losses()


def test_a_killed_dpo_run_resumes_from_its_last_epoch_checkpoint(make_spec: MakeSpec,
                                                                 tmp_path: Path) -> None:
    straight = train(dpo_spec(make_spec))[1].losses()
    work = tmp_path / "killed-dpo"
    kill_at_step(dpo_spec(make_spec, work_dir=work), 7)
    result, after = train(dpo_spec(make_spec, work_dir=work, resume=True))
    assert result.status == "succeeded"
    assert [m["step"] for m in after.of("metrics")] == list(range(5, 13))  # from the step-4 state
    assert after.losses() == straight[4:]


def test_dpo_cancel_stops_the_run(make_spec: MakeSpec) -> None:
    result, recorder = train(dpo_spec(make_spec), Recorder(stop_at={2: "cancel"}))
    assert result.status == "cancelled" and result.adapter_dir is None
    assert len(recorder.of("metrics")) == 2


def test_a_supervised_adapter_is_the_starting_point_and_the_reference(make_spec: MakeSpec) -> None:
    rows = memorisation_rows(6)
    sft_result, _ = train(make_spec(rows, hyperparameters={
        "n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 5}))
    result, recorder = train(dpo_spec(make_spec, init_adapter=sft_result.adapter_dir))
    assert result.status == "succeeded"
    # Policy and reference are the same supervised model at step 1, so the loss is log 2:
    # the reference is not the raw base (that would give a different first loss).
    assert recorder.losses()[0] == pytest.approx(math.log(2), abs=1e-4)
    assert any("the starting fine-tuned model" in e.get("message", "")
               for e in recorder.of("message"))
