"""Reinforcement fine-tuning (GRPO) on the tiny llama: advantages, the loss's gradient, rewards
and their errors, the RFT reader, rollouts, and the run (metrics, CSV, checkpoints, pause and
resume, cancel, a grader that fails)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import tiers
from tunegate.domain.methods import Method
from tunegate.graders import Grade, parse_grader
from tunegate.graders.grades import failure
from tunegate.training.errors import TrainingFailed
from tunegate.training.spec import TrainingSpec

from .conftest import THIRD_PARTY_WARNINGS, Killed, Recorder, write_jsonl

torch = tiers.lazy("torch")
pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

MakeSpec = Callable[..., TrainingSpec]
# Rewards a completion that contains the letter "a": about half of the tiny model's do.
HAS_A = {"type": "string_check", "name": "has_a", "input": "{{ sample.output_text }}",
         "reference": "a", "operation": "like"}
RFT_METRICS = ["train_reward_mean", "train_reward_std", "train_zero_std_groups",
               "train_completion_length", "train_grader_errors"]


def rft_rows(n: int = 6) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"}],
             "answer": str(2 * i)} for i in range(n)]


def rft_spec(make_spec: MakeSpec, grader: dict[str, Any] | None = None,
             hyperparameters: dict[str, Any] | None = None, **fields: Any) -> TrainingSpec:
    valid = fields.pop("valid_rows", rft_rows(2))
    spec = make_spec(rft_rows(), valid_rows=valid, **fields)
    hp = hyperparameters or {"n_epochs": 2, "batch_size": 2, "compute_multiplier": 1.0,
                             "learning_rate_multiplier": 2, "eval_interval": 2}
    return dataclasses.replace(spec, method=Method.of("reinforcement", hp,
                                                      grader=grader or HAS_A))


def train(spec: TrainingSpec, recorder: Recorder | None = None) -> tuple[Any, Recorder]:
    from tunegate.training.run import TrainerOptions, run_training

    recorder = recorder or Recorder()
    options = TrainerOptions(completion_tokens=12, threads=1)
    return run_training(spec, recorder.emit, recorder.should_stop, options), recorder


class KilledAt(Recorder):
    """Stops the run dead (as SIGKILL would: nothing after it runs) as step ``step`` is
    reported."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def emit(self, message: Any) -> None:
        from tunegate.training.messages import StepMetrics

        if isinstance(message, StepMetrics) and message.step == self.step:
            raise Killed
        super().emit(message)


def rewards(recorder: Recorder) -> list[float]:
    return [event["train_reward_mean"] for event in recorder.of("metrics")]


# -- pure parts --------------------------------------------------------------------------------

@pytest.mark.model
def test_advantages_are_normalised_within_each_group() -> None:
    from tunegate.training.grpo import group_advantages

    advantages = group_advantages([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5], 4)
    std = math.sqrt(1 / 3)  # sample std of (1, 0, 0, 1)
    assert advantages[:4] == pytest.approx([0.5 / (std + 1e-4), -0.5 / (std + 1e-4),
                                            -0.5 / (std + 1e-4), 0.5 / (std + 1e-4)])
    assert advantages[4:] == [0.0] * 4  # all equal: no signal


@pytest.mark.model
def test_a_sample_without_reward_is_left_out_of_its_group() -> None:
    from tunegate.training.grpo import group_advantages, zero_std_share

    advantages = group_advantages([1.0, None, 0.0, 0.0, None, None], 3)
    assert advantages[1] == 0.0 and advantages[0] > 0 > advantages[2]
    assert advantages[3:] == [0.0, 0.0, 0.0]  # one scored sample: no spread
    assert zero_std_share([1.0, None, 0.0, 0.0, None, None], 3) == 0.5


@pytest.mark.model
def test_the_loss_is_zero_in_value_and_its_gradient_the_policy_gradient() -> None:
    from tunegate.training.grpo import policy_gradient_loss

    log_probs = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    advantages = torch.tensor([1.0, 1.0, -2.0])
    loss = policy_gradient_loss(log_probs, advantages, n_tokens=4)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0)  # ratio 1: -sum(A) / n, here 0
    assert log_probs.grad.tolist() == pytest.approx([-0.25, -0.25, 0.5])


def test_a_failed_nan_or_out_of_range_reward_is_an_error() -> None:
    from tunegate.training.rewards import reward_of

    plain = parse_grader(HAS_A)
    scored = parse_grader({"type": "score_model", "name": "judge", "model": "m",
                           "input": [{"role": "user", "content": "{{ sample.output_text }}"}],
                           "range": [0, 10]})
    assert reward_of(plain, Grade(score=1.0)).value == 1.0
    assert reward_of(plain, Grade(score=float("nan"))).error is not None
    assert reward_of(scored, Grade(score=11.0)).error == (
        "the grader's score 11.0 is outside its range [0, 10]")
    assert reward_of(scored, Grade(score=7.0)).value == 7.0
    failed = reward_of(plain, failure("python_grader_runtime_error",
                                      ("python_grader_runtime_error_details", "ZeroDivisionError")))
    assert failed.value is None and "ZeroDivisionError" in str(failed.error)


def test_a_grader_failing_on_most_samples_fails_the_run() -> None:
    from tunegate.training.rewards import Reward, check_error_share

    check_error_share([Reward(1.0), Reward(None, error="x")])  # half: goes on
    with pytest.raises(TrainingFailed) as caught:
        check_error_share([Reward(1.0), Reward(None, error="boom"), Reward(None, error="x")])
    assert caught.value.code == "grader_failed" and "boom" in caught.value.message


def test_rewards_come_from_the_grader_with_the_item(tmp_path: Path) -> None:
    from tunegate.training.rewards import Rewarder

    grader = parse_grader({"type": "string_check", "name": "exact",
                           "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
                           "operation": "eq"})
    rewarder = Rewarder(grader)
    try:
        got = rewarder.rewards(["4", "5"], [{"answer": "4"}, {"answer": "4"}])
    finally:
        rewarder.close()
    assert [r.value for r in got] == [1.0, 0.0]


# -- the RFT reader ----------------------------------------------------------------------------

@pytest.mark.model
def test_prompts_end_with_the_generation_prompt_and_keep_the_item(tiny_tokenizer: Any,
                                                                  tmp_path: Path) -> None:
    from tunegate.training.rft_data import load_prompts

    path = write_jsonl(tmp_path / "rft.jsonl", rft_rows(2))
    data = load_prompts(path, tiny_tokenizer, 256)
    first = data.examples[0]
    assert first.item == {"answer": "0"} and first.line == 1
    text = tiny_tokenizer.decode(first.input_ids)
    assert text.endswith("What is 0 plus 0?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.model
def test_a_line_not_ending_with_a_user_message_names_its_line(tiny_tokenizer: Any,
                                                             tmp_path: Path) -> None:
    from tunegate.training.rft_data import load_prompts

    rows = [*rft_rows(1), {"messages": [{"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "hello"}]}]
    with pytest.raises(TrainingFailed) as caught:
        load_prompts(write_jsonl(tmp_path / "rft.jsonl", rows), tiny_tokenizer, 256)
    assert caught.value.code == "invalid_training_file"
    assert caught.value.message.startswith("Line 2: the last message must be the user's")


def test_reasoning_effort_switches_thinking_only_where_the_template_has_the_switch() -> None:
    from tunegate.training.rft_data import thinking_switch

    class Template:
        def __init__(self, text: str):
            self.chat_template = text

    qwen = Template("{% if enable_thinking is false %}<think></think>{% endif %}")
    assert thinking_switch("low", qwen) == {"enable_thinking": False}  # type: ignore[arg-type]
    assert thinking_switch("high", qwen) == {"enable_thinking": True}  # type: ignore[arg-type]
    assert thinking_switch("default", qwen) == {}  # type: ignore[arg-type]
    assert thinking_switch("low", Template("{{ messages }}")) == {}  # type: ignore[arg-type]


# -- rollouts ----------------------------------------------------------------------------------

@pytest.mark.model
def test_rollouts_are_prompt_major_and_within_the_budget(tiny_base: Path,
                                                         tiny_tokenizer: Any) -> None:
    from transformers import AutoModelForCausalLM

    from tunegate.training import rollout

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    prompts = [tiny_tokenizer("a b c")["input_ids"], tiny_tokenizer("a")["input_ids"]]
    with torch.no_grad(), rollout.seeded(3):
        first = rollout.sample(model, tiny_tokenizer, prompts, 3, 10, torch.device("cpu"))
    with torch.no_grad(), rollout.seeded(3):
        again = rollout.sample(model, tiny_tokenizer, prompts, 3, 10, torch.device("cpu"))
    assert first is not None and first == again  # the same seed samples the same
    assert [c.prompt for c in first] == [0, 0, 0, 1, 1, 1]
    eos = tiny_tokenizer.eos_token_id
    for completion in first:
        assert 1 <= len(completion.token_ids) <= 10
        assert completion.finished == (completion.token_ids[-1] == eos)
        assert eos not in completion.token_ids[:-1]


@pytest.mark.model
def test_a_cancel_ends_generation_at_once(tiny_base: Path, tiny_tokenizer: Any) -> None:
    from transformers import AutoModelForCausalLM

    from tunegate.training import rollout

    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    calls: list[int] = []

    def stop() -> str:
        calls.append(1)
        return "cancel"

    with torch.no_grad():
        assert rollout.sample(model, tiny_tokenizer, [[5, 6]], 2, 50, torch.device("cpu"),
                              stop) is None
    assert len(calls) == 1


# -- the run -----------------------------------------------------------------------------------

def test_a_run_reports_reward_metrics_checkpoints_and_the_csv(make_spec: MakeSpec) -> None:
    result, recorder = train(rft_spec(make_spec))
    assert result.status == "succeeded"
    metrics = recorder.of("metrics")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for event in metrics:
        assert all(event[name] >= 0.0 for name in RFT_METRICS)
        assert 0.0 <= event["train_reward_mean"] <= 1.0
    assert [("valid_reward_mean" in m) for m in metrics] == [False, True, False, True, False, True]
    # The graded answers: one training answer per prompt each step, every validation answer
    # on a step that validated (the worker records those as the job's eval run).
    first, second = metrics[0]["samples"], metrics[1]["samples"]
    assert [s["split"] for s in first] == ["train", "train"]
    assert sorted(s["line"] for s in second if s["split"] == "valid") == [1, 2]
    assert all(set(s) == {"split", "line", "output_text", "reward", "sub_rewards", "error"}
               and s["reward"] in (0.0, 1.0) for s in first + second)
    hyper = recorder.of("hyperparameters")[0]["resolved"]
    assert hyper["compute_multiplier"] == 1.0 and hyper["eval_samples"] == 1
    checkpoints = recorder.of("checkpoint")
    assert [c["step"] for c in checkpoints] == [3, 6]
    assert "train_reward_mean" in checkpoints[0]["metrics"]
    saved = json.loads((Path(checkpoints[0]["path"]) / "metrics.json").read_text())
    assert saved["train_reward_mean"] == checkpoints[0]["metrics"]["train_reward_mean"]
    with open(result.results_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", *RFT_METRICS, "valid_reward_mean"]
    assert len(rows) == 6 and rows[1]["valid_reward_mean"] != ""


def test_pause_then_resume_samples_and_rewards_as_an_uninterrupted_run(make_spec: MakeSpec,
                                                                      tmp_path: Path) -> None:
    straight = train(rft_spec(make_spec))[1]
    work = tmp_path / "paused-rft"
    paused, before = train(rft_spec(make_spec, work_dir=work), Recorder(stop_at={2: "pause"}))
    assert paused.status == "paused"
    resumed, after = train(rft_spec(make_spec, work_dir=work, resume=True))
    assert resumed.status == "succeeded"
    assert [m["step"] for m in after.of("metrics")] == [3, 4, 5, 6]
    assert rewards(before) + rewards(after) == rewards(straight)
    lengths = [m["train_completion_length"] for m in before.of("metrics") + after.of("metrics")]
    assert lengths == [m["train_completion_length"] for m in straight.of("metrics")]
    assert [m.get("valid_reward_mean") for m in after.of("metrics")] == \
        [m.get("valid_reward_mean") for m in straight.of("metrics")[2:]]


def test_a_killed_run_resumes_from_its_saved_state_and_samples_as_an_uninterrupted_run(
        make_spec: MakeSpec, tmp_path: Path) -> None:
    """Killed mid-epoch 2 (step 5), the run resumes from the epoch-1 state (step 3): the
    adapter, the optimizer's moments, the schedule and the sampling generator come back, so
    steps 4-6 sample the same completions and earn the same rewards as a run never killed; the
    journal records every step once."""
    from tunegate.training import journal
    from tunegate.training.messages import StepMetrics

    straight = train(rft_spec(make_spec))[1]
    work = tmp_path / "killed-rft"
    with pytest.raises(Killed):
        train(rft_spec(make_spec, work_dir=work), KilledAt(5))
    saved = torch.load(work / "run" / "optimizer.pt", weights_only=True)
    progress = json.loads((work / "run" / "progress.json").read_text())
    assert progress["step"] == 3 and saved["scheduler"]["last_epoch"] == 3
    moments = saved["optimizer"]["state"]
    assert moments and all(int(m["step"]) == 3 for m in moments.values())
    assert set(saved["rng"]) >= {"torch", "python"}

    resumed, after = train(rft_spec(make_spec, work_dir=work, resume=True))
    assert resumed.status == "succeeded"
    assert [m["step"] for m in after.of("metrics")] == [4, 5, 6]
    assert rewards(after) == rewards(straight)[3:]
    lengths = [m["train_completion_length"] for m in after.of("metrics")]
    assert lengths == [m["train_completion_length"] for m in straight.of("metrics")[3:]]
    answers = [[s["output_text"] for s in m["samples"]] for m in after.of("metrics")]
    assert answers == [[s["output_text"] for s in m["samples"]]
                       for m in straight.of("metrics")[3:]]
    recorded = [m.step for m in journal.load(work) if isinstance(m, StepMetrics)]
    assert recorded == [1, 2, 3, 4, 5, 6]


def test_cancel_stops_a_reinforcement_run(make_spec: MakeSpec) -> None:
    result, recorder = train(rft_spec(make_spec), Recorder(stop_at={1: "cancel"}))
    assert result.status == "cancelled" and len(recorder.of("metrics")) == 1


def test_a_grader_that_fails_on_every_sample_fails_the_run_clearly(make_spec: MakeSpec) -> None:
    broken = {"type": "string_check", "name": "broken", "input": "{{ item.missing }}",
              "reference": "a", "operation": "eq"}
    with pytest.raises(TrainingFailed) as caught:
        train(rft_spec(make_spec, grader=broken))
    assert caught.value.code == "grader_failed"
    assert "invalid_variable_error" in caught.value.message


# Sleeps 30 s on the prompt marked slow: far within OpenAI's 2 minutes, past the test's limit.
SLOW_ON_ONE_PROMPT = {
    "type": "python", "name": "slow_on_one",
    "source": "import time\n\ndef grade(sample, item):\n    if item.get('slow'):\n"
              "        time.sleep(30)\n    return 1.0 if 'a' in sample['output_text'] else 0.0\n"}
# Needs about 256 MB: within OpenAI's 2 GB, beyond the 128 MB the test allows.
HOARDER = {"type": "python", "name": "hoarder",
           "source": "def grade(sample, item):\n    hoard = bytearray(256 * 1024 * 1024)\n"
                     "    return 1.0 if len(hoard) else 0.0\n"}


def test_a_slow_python_grader_is_stopped_at_the_time_limit_and_counted_per_sample(
        make_spec: MakeSpec) -> None:
    """The worker's TUNEGATE_PYTHON_GRADER_SECONDS reaches the trainer through the spec; the
    slow prompt's completions (4 of a step's 12) are errors, the run goes on."""
    rows = [{**row, "slow": index == 0} for index, row in enumerate(rft_rows())]
    hp = {"n_epochs": 1, "batch_size": 3, "compute_multiplier": 1.0, "eval_interval": 2}
    spec = dataclasses.replace(
        make_spec(rows, valid_rows=rft_rows(1), python_grader_seconds=0.5),
        method=Method.of("reinforcement", hp, grader=SLOW_ON_ONE_PROMPT))
    result, recorder = train(spec)
    assert result.status == "succeeded"
    metrics = recorder.of("metrics")
    assert [m["train_grader_errors"] for m in metrics] in ([4.0, 0.0], [0.0, 4.0])
    errors = [s["error"] for m in metrics for s in m["samples"] if s["error"]]
    assert errors and all("python_grader_runtime_error" in e for e in errors), errors
    assert all(m["train_reward_mean"] >= 0.0 for m in metrics)


def test_a_python_grader_over_the_memory_limit_fails_the_run_clearly(
        make_spec: MakeSpec) -> None:
    with pytest.raises(TrainingFailed) as caught:
        train(rft_spec(make_spec, grader=HOARDER, python_grader_memory_mb=128))
    assert caught.value.code == "grader_failed"
    assert "MemoryError" in caught.value.message, caught.value.message
    assert caught.value.param == "method.reinforcement.grader"


def test_a_model_grader_without_an_endpoint_fails_the_run_before_training(
        make_spec: MakeSpec) -> None:
    judge = {"type": "score_model", "name": "judge", "model": "SmolLM2-135M-Instruct",
             "input": [{"role": "user", "content": "Rate: {{ sample.output_text }}"}]}
    with pytest.raises(TrainingFailed) as caught:
        train(rft_spec(make_spec, grader=judge))
    assert caught.value.code == "invalid_grader" and "no endpoint" in caught.value.message


def test_a_model_grader_rewards_every_sample_through_the_grader_endpoint(
        make_spec: MakeSpec) -> None:
    """The trainer's side of a model grader (the worker gives it the server's /v1; the real
    model answers graders in tests/e2e/test_graders_sdk.py): every sampled answer, training's
    and validation's, is put to the endpoint in the grader's words, several at once, and its
    score is the sample's reward."""
    from tests.api.test_graders_endpoint import SCORE, FakeExternalEndpoint
    from tunegate.training.hyperparams import group_size

    with FakeExternalEndpoint(together=2) as judge:
        spec = dataclasses.replace(rft_spec(make_spec, grader=SCORE), grader_endpoint=judge.url)
        _, recorder = train(spec)
    metrics = recorder.of("metrics")
    assert [m["train_reward_mean"] for m in metrics] == [0.75] * len(metrics)  # the judge's
    assert all(m["train_grader_errors"] == 0 for m in metrics)
    validations = [m["valid_reward_mean"] for m in metrics if m.get("valid_reward_mean") is not None]
    assert validations and set(validations) == {0.75}
    asked = [body["messages"][0]["content"] for body in judge.bodies]
    answers = {f" {row['answer']}?" for row in rft_rows()}
    assert all(text.startswith("Is ") and text[text.rindex(" "):] in answers for text in asked)
    # Each step's 2 prompts x group_size(1.0) answers, then 1 answer to each of the 2
    # validation prompts at every validation: each asked once, several at a time.
    per_step = 2 * group_size(1.0)
    assert len(asked) == per_step * len(metrics) + 2 * len(validations)
    assert judge.most_in_flight >= 2
