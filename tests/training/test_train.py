"""run_training end to end on the tiny llama: learning, repeatability, pause/resume, cancel, crash."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import tiers
from tunegate.training.messages import StepMetrics, TrainerMessage
from tunegate.training.spec import TrainingSpec

from .conftest import (
    THIRD_PARTY_WARNINGS,
    Recorder,
    build_tiny_model,
    chat,
    kill_at_step,
    memorisation_rows,
)

torch = tiers.lazy("torch")
pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

MakeSpec = Callable[..., TrainingSpec]


def train(spec: TrainingSpec, recorder: Recorder | None = None,
          options: Any = None) -> tuple[Any, Recorder]:
    from tunegate.training.run import run_training

    recorder = recorder or Recorder()
    return run_training(spec, recorder.emit, recorder.should_stop, options), recorder


def test_lora_weights_change_and_base_weights_do_not(tiny_tokenizer: Any) -> None:
    from tunegate.training import lora, trainer
    from tunegate.training.data import Example

    model = build_tiny_model(len(tiny_tokenizer))
    from tunegate.training import attention

    model.set_attn_implementation(attention.register())
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = lora.attach_lora(model)
    adapter_before = {k: v.detach().clone() for k, v in lora.trainable_parameters(peft_model).items()}
    assert adapter_before and all("lora_" in name for name in adapter_before)
    engine = trainer.Engine(peft_model, torch.device("cpu"), token_budget=512)
    optimizer = trainer.make_optimizer(peft_model, 1e-2, 0.0)
    example = Example([1, 5, 9, 13, 17, 21], [-100, -100, 9, 13, 17, 21], line=1)
    for _ in range(3):
        assert trainer.train_step(engine, [example, example], lambda: None) is not None
        optimizer.step()
        optimizer.zero_grad()
    after = lora.trainable_parameters(peft_model)
    assert all(not torch.equal(after[k], v) for k, v in adapter_before.items()
               if "lora_B" in k)  # B starts at zero: every B must have moved
    base_after = peft_model.get_base_model().state_dict()
    for name, tensor in base_before.items():
        peft_name = name.replace(".weight", ".base_layer.weight")
        current = base_after.get(name, base_after.get(peft_name))
        assert current is not None, name
        assert torch.equal(current, tensor), name


def test_training_succeeds_and_writes_adapter_results_and_checkpoints(make_spec: MakeSpec) -> None:
    spec = make_spec(memorisation_rows(8), valid_rows=memorisation_rows(3),
                     hyperparameters={"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 2})
    from tunegate.training.trainer import TrainerOptions

    result, recorder = train(spec, options=TrainerOptions(valid_every=3))
    work = Path(spec.work_dir)
    assert result.status == "succeeded"
    assert result.hyperparameters == {"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 2.0}
    kinds = [event["kind"] for event in recorder.events]
    assert kinds.count("hyperparameters") == 1
    assert kinds.index("hyperparameters") < kinds.index("metrics")
    metrics = recorder.of("metrics")
    assert [m["step"] for m in metrics] == list(range(1, 17))
    assert {m["total_steps"] for m in metrics} == {16}
    assert metrics[-1]["estimated_finish_seconds"] == 0
    # What a chart needs besides the losses: the schedule's rate (warmup, then linear decay, at
    # most the resolved rate) and a positive throughput on every step.
    from tunegate.training.hyperparams import BASE_LEARNING_RATE

    rates = [m["learning_rate"] for m in metrics]
    peak = rates.index(max(rates))
    assert min(rates) > 0 and max(rates) <= BASE_LEARNING_RATE * 2 * (1 + 1e-9)
    assert rates[peak:] == sorted(rates[peak:], reverse=True) and rates[-1] < rates[peak]
    assert all(m["tokens_per_second"] > 0 for m in metrics)
    # trained_tokens counts every token of every example, once per epoch
    tokens = [m["trained_tokens"] for m in metrics]
    assert tokens == sorted(tokens) and result.trained_tokens == tokens[-1]
    assert result.trained_tokens == 4 * sum(len(x) for x in _token_lengths(spec))
    # checkpoints at epoch ends (steps 4, 8, 12, 16), three kept on disk
    checkpoints = recorder.of("checkpoint")
    assert [c["step"] for c in checkpoints] == [4, 8, 12, 16]
    assert {"full_valid_loss", "full_valid_mean_token_accuracy", "valid_loss",
            "train_loss", "train_mean_token_accuracy"} <= set(checkpoints[-1]["metrics"])
    assert "full_valid_loss" in checkpoints[0]["metrics"]
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == [
        "step-12", "step-16", "step-8"]
    assert (work / "checkpoints" / "step-16" / "adapter" / "adapter_model.safetensors").is_file()
    assert (work / "checkpoints" / "step-16" / "metrics.json").is_file()
    assert (Path(result.adapter_dir) / "adapter_config.json").is_file()
    assert not (work / "run").exists()  # no resumable state left after success
    with open(result.results_csv) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["step", "train_loss", "train_accuracy", "valid_loss",
                       "valid_mean_token_accuracy"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 17))
    assert [r[0] for r in rows[1:] if r[3] != "" and r[4] != ""] == ["3", "6", "9", "12", "15", "16"]


def _token_lengths(spec: TrainingSpec) -> list[list[int]]:
    from transformers import AutoTokenizer

    from tunegate.training.data import load_dataset

    tokenizer = AutoTokenizer.from_pretrained(spec.base_model.path)
    dataset = load_dataset(spec.training_file, tokenizer, spec.max_seq_len)
    return [e.input_ids for e in dataset.examples]


def test_loss_decreases_on_a_memorisation_set(make_spec: MakeSpec) -> None:
    spec = make_spec(memorisation_rows(6),
                     hyperparameters={"n_epochs": 10, "batch_size": 2, "learning_rate_multiplier": 5})
    _, recorder = train(spec)
    losses = recorder.losses()
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.3 * first, (first, last)


def test_same_seed_same_losses_other_seed_other_losses(make_spec: MakeSpec) -> None:
    rows = memorisation_rows(6)
    first = train(make_spec(rows))[1].losses()
    again = train(make_spec(rows))[1].losses()
    other = train(make_spec(rows, seed=7))[1].losses()
    assert first == again
    assert first != other


def test_pause_then_resume_matches_an_uninterrupted_run(make_spec: MakeSpec, tmp_path: Path) -> None:
    rows = memorisation_rows(8)
    straight = train(make_spec(rows))[1]
    work = tmp_path / "paused-job"
    paused_result, before = train(make_spec(rows, work_dir=work), Recorder(stop_at={5: "pause"}))
    assert paused_result.status == "paused"
    assert paused_result.adapter_dir is None and (work / "run" / "progress.json").is_file()
    assert [m["step"] for m in before.of("metrics")] == [1, 2, 3, 4, 5]
    resumed_result, after = train(make_spec(rows, work_dir=work, resume=True))
    assert resumed_result.status == "succeeded"
    assert [m["step"] for m in after.of("metrics")] == list(range(6, 13))
    # Same process, same threads, same kernels: the resumed steps are bit-for-bit the same.
    assert before.losses() + after.losses() == straight.losses()
    assert resumed_result.trained_tokens == straight.of("metrics")[-1]["trained_tokens"]
    with open(resumed_result.results_csv) as handle:
        assert len(handle.readlines()) == 1 + 12  # rows from before the pause are kept


def test_a_killed_run_resumes_from_its_last_epoch_checkpoint(make_spec: MakeSpec,
                                                             tmp_path: Path) -> None:
    rows = memorisation_rows(8)  # batch 2: 4 steps per epoch
    straight = train(make_spec(rows))[1].losses()
    work = tmp_path / "killed-job"
    kill_at_step(make_spec(rows, work_dir=work), 7)
    result, after = train(make_spec(rows, work_dir=work, resume=True))
    assert result.status == "succeeded"
    assert [m["step"] for m in after.of("metrics")] == list(range(5, 13))  # from the step-4 state
    assert after.losses() == straight[4:]


class StateAtEachCheckpoint(Recorder):
    """Notes, as each checkpoint is announced, the step of the resumable state on disk then."""

    def __init__(self, work_dir: Path) -> None:
        super().__init__()
        self.work_dir = work_dir
        self.saved_step_when_announced: list[int | None] = []

    def emit(self, message: TrainerMessage) -> None:
        import json

        from tunegate.training.messages import CheckpointSaved

        if isinstance(message, CheckpointSaved):
            progress = self.work_dir / "run" / "progress.json"
            self.saved_step_when_announced.append(
                json.loads(progress.read_text())["step"] if progress.exists() else None)
        super().emit(message)


def test_a_checkpoint_is_announced_once_a_crash_would_resume_from_it(
        make_spec: MakeSpec, tmp_path: Path) -> None:
    """A worker frozen right after "Checkpoint created at step 4" must not leave its successor
    with nothing to resume (the state used to be written after the announcement)."""
    work = tmp_path / "job"
    recorder = StateAtEachCheckpoint(work)
    result, _ = train(make_spec(memorisation_rows(8), work_dir=work), recorder)
    assert result.status == "succeeded"
    # Steps 4 and 8 leave resumable state; the last (12) is the final adapter instead.
    assert recorder.saved_step_when_announced[:2] == [4, 8]


def test_the_journal_beside_the_saved_state_holds_everything_reported_up_to_it(
        make_spec: MakeSpec, tmp_path: Path) -> None:
    """What a worker that died before reading the trainer's last messages records from
    (tunegate.training.journal): at the step-4 state, steps 1-4 and checkpoint 4; after the
    resume, every step and checkpoint once, even where the journal ran ahead of the state."""
    from dataclasses import replace

    from tunegate.training import journal
    from tunegate.training.messages import CheckpointSaved, StepMetrics

    rows = memorisation_rows(8)  # batch 2: 4 steps per epoch
    straight = train(make_spec(rows))[1].losses()
    work = tmp_path / "killed-job"
    kill_at_step(make_spec(rows, work_dir=work), 7)
    saved = journal.load(work)
    assert [(type(m).__name__, m.step) for m in saved] == [
        *(("StepMetrics", step) for step in (1, 2, 3, 4)), ("CheckpointSaved", 4)]
    assert [m.values["train_loss"] for m in saved if isinstance(m, StepMetrics)] == straight[:4]
    assert isinstance(saved[-1], CheckpointSaved) and Path(saved[-1].path).is_dir()
    # A kill between writing the journal and the state leaves the journal ahead.
    ahead = replace(next(m for m in saved if isinstance(m, StepMetrics)), step=5)
    journal.save(work, [*saved, ahead])

    result, _ = train(make_spec(rows, work_dir=work, resume=True))
    assert result.status == "succeeded"
    final = journal.load(work)
    assert [m.step for m in final if isinstance(m, StepMetrics)] == list(range(1, 13))
    assert [m.step for m in final if isinstance(m, CheckpointSaved)] == [4, 8, 12]


def test_cancel_stops_between_steps_and_inside_a_step(make_spec: MakeSpec) -> None:
    from tunegate.training.run import run_training
    from tunegate.training.trainer import TrainerOptions

    result, recorder = train(make_spec(), Recorder(stop_at={2: "cancel"}))
    assert result.status == "cancelled" and result.adapter_dir is None
    assert len(recorder.of("metrics")) == 2
    # One example per micro-batch: the second poll comes before the step's second micro-batch.
    polls = iter(range(1000))
    events: list[TrainerMessage] = []
    spec = make_spec(hyperparameters={"n_epochs": 1, "batch_size": 8}, max_seq_len=64)
    result = run_training(spec, events.append, lambda: "cancel" if next(polls) >= 1 else None,
                          TrainerOptions(token_budget=64))
    assert result.status == "cancelled"
    assert not [e for e in events if isinstance(e, StepMetrics)]
    assert not (Path(spec.work_dir) / "adapter").exists()


def test_resume_refuses_state_from_other_data(make_spec: MakeSpec, tmp_path: Path) -> None:
    from tunegate.training.errors import TrainingFailed

    work = tmp_path / "job"
    train(make_spec(memorisation_rows(8), work_dir=work), Recorder(stop_at={1: "pause"}))
    with pytest.raises(TrainingFailed) as caught:
        train(make_spec(memorisation_rows(9), work_dir=work, resume=True))
    assert caught.value.code == "invalid_resume_state"


def test_training_continues_from_an_earlier_adapter(make_spec: MakeSpec) -> None:
    rows = memorisation_rows(6)
    hp = {"n_epochs": 6, "batch_size": 2, "learning_rate_multiplier": 5}
    first, first_events = train(make_spec(rows, hyperparameters=hp))
    second, second_events = train(make_spec(rows, hyperparameters=hp,
                                            init_adapter=first.adapter_dir))
    assert second.status == "succeeded"
    assert second_events.losses()[0] < 0.8 * first_events.losses()[0]


def test_auto_hyperparameters_are_resolved_and_reported(make_spec: MakeSpec) -> None:
    result, recorder = train(make_spec([chat(f"q{i}", f"a{i}") for i in range(40)],
                                       hyperparameters={}))
    resolved = recorder.of("hyperparameters")[0]["resolved"]
    assert resolved == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 0.5}
    assert result.hyperparameters == resolved
    assert len(recorder.of("metrics")) == 120


@pytest.mark.parametrize("too_long", ["training", "validation"])
def test_a_file_with_no_example_within_the_limit_fails_before_the_model_loads(
        make_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch, too_long: str) -> None:
    from tunegate.training import model_cache
    from tunegate.training.errors import TrainingFailed

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model loaded before the data was checked")

    monkeypatch.setattr(model_cache, "load_model", no_model)
    long_rows = [chat("word " * 300, f"a{i}") for i in range(3)]
    rows, valid = ((long_rows, None) if too_long == "training"
                   else (memorisation_rows(), long_rows))
    recorder = Recorder()
    with pytest.raises(TrainingFailed) as caught:
        train(make_spec(rows, valid_rows=valid, max_seq_len=64), recorder)
    assert (caught.value.code, caught.value.param) == (f"invalid_{too_long}_file",
                                                       f"{too_long}_file")
    assert "64 tokens (setting TUNEGATE_MAX_SEQ_LEN)" in caught.value.message
    assert "The longest is line 1 (" in caught.value.message
    assert recorder.of("metrics") == [] and recorder.of("hyperparameters") == []


def test_gradient_checkpointing_trains_the_same_adapter(make_spec: MakeSpec,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpointing recomputes each layer's forward pass in backward instead of keeping its
    activations: the gradients, so the losses, are those of the plain run (up to the order of
    float sums), every decoder layer went through torch's checkpoint, and the run says so."""
    import transformers.modeling_utils

    rows = memorisation_rows(6)
    calls: list[int] = []
    real_checkpoint = transformers.modeling_utils.checkpoint

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counted)
    plain = train(make_spec(rows))[1]
    assert calls == []
    result, recorder = train(make_spec(rows, gradient_checkpointing=True))
    assert len(calls) >= len(recorder.losses()) * 2  # the tiny llama's 2 layers, every step
    assert result.status == "succeeded"
    assert recorder.losses() == pytest.approx(plain.losses(), rel=1e-3, abs=1e-4)
    assert len(recorder.losses()) > 3
    def checkpointing_notes(events: Recorder) -> list[str]:
        return [e["message"] for e in events.of("message")
                if e["message"].startswith("Gradient checkpointing on")]

    assert len(checkpointing_notes(recorder)) == 1 and checkpointing_notes(plain) == []
