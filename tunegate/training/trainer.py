"""The fine-tuning loop: packed micro-batches, AdamW, warmup + linear decay.

``train`` runs optimizer steps from ``progress.step`` to the end, emitting one ``metrics`` event
per step and a ``checkpoint`` event at each epoch end, and stops early when ``should_stop`` asks.
What one step computes is the loop's :class:`Objective`: :class:`SupervisedObjective` (next-token
loss, here) or the preference objective of :mod:`tunegate.training.dpo`; everything else
(optimizer, schedule, validation cadence, checkpoints, pause, cancel) is shared.
Everything that decides *what* a step computes is a pure function of (seed, step): the example
order of an epoch, the batch of a step, the validation batch. So a run resumed from saved state
(adapter, optimizer, scheduler, RNG, step) computes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tunegate.training import journal, state
from tunegate.training.data import Dataset, Example, Item
from tunegate.training.hyperparams import ResolvedHyperparameters, steps_per_epoch
from tunegate.training.loss import LossSums, causal_lm_loss
from tunegate.training.messages import CheckpointSaved, Emit, StepMetrics, note
from tunegate.training.packing import MicroBatch, pack
from tunegate.training.spec import RunStatus
from tunegate.training.threads import ThreadGovernor

ShouldStop = Callable[[], str | None]

# Tokens per packed micro-batch (besides a shared prefix). On CPU, throughput at 1,024, 2,048
# and 4,096 tokens was within measurement noise (121-132 tokens per CPU-second) while
# activation memory grows ~1.2 MB per token (bench/README.md), so the smallest keeps peak
# memory down; a GPU wants bigger rows.
CPU_TOKEN_BUDGET = 1024
CUDA_TOKEN_BUDGET = 16384
VALIDATIONS_PER_RUN = 20  # small-batch validations spread over the run (plus the last step)


@dataclass(frozen=True)
class TrainerOptions:
    """Engine settings that are not job hyperparameters (tests and the bench change them)."""

    token_budget: int | None = None  # None: CPU_TOKEN_BUDGET or CUDA_TOKEN_BUDGET
    valid_every: int | None = None  # steps between small-batch validations; None: automatic
    warmup_fraction: float = 0.05
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    threads: int | None = None  # CPU threads; None: adaptive (tunegate.training.threads)
    # Reinforcement: the most new tokens per completion; None: from reasoning_effort.
    completion_tokens: int | None = None


class Engine:
    """The model's forward pass on packed micro-batches, returning loss sums (no logits kept)."""

    def __init__(self, model: Any, device: torch.device, token_budget: int,
                 autocast: bool | None = None):
        self.model = model
        base = model.get_base_model()
        # The decoder stack without the head: the loss applies the (frozen) head in chunks.
        self.decoder = getattr(base, base.base_model_prefix)
        self.head_weight = base.get_output_embeddings().weight
        self.device = device
        self.token_budget = token_budget
        # bfloat16 autocast around the decoder (tunegate.training.precision); None: CUDA's rule.
        self.autocast = (device.type == "cuda" and torch.cuda.is_bf16_supported()
                         if autocast is None else autocast)

    def hidden(self, batch: MicroBatch) -> torch.Tensor:
        """The decoder's last hidden states [T, H] of a micro-batch already on the device."""
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                            enabled=self.autocast):
            return self.decoder(input_ids=batch.input_ids, position_ids=batch.position_ids,
                                use_cache=False, **batch.attention_kwargs()).last_hidden_state[0]

    def sums(self, batch: MicroBatch) -> LossSums:
        batch = batch.to(self.device)
        return causal_lm_loss(self.hidden(batch), self.head_weight, batch.targets,
                              batch.target_rows)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode without gradients, back to training mode afterwards (even on errors)."""
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train()

    def evaluate(self, examples: Sequence[Example],
                 should_stop: ShouldStop | None = None) -> tuple[float, float] | None:
        """Token-weighted mean loss and argmax accuracy; ``None`` if cancelled or empty."""
        loss = 0.0
        correct = tokens = 0
        with self.evaluating():
            for batch in pack(examples, self.token_budget):
                if should_stop is not None and should_stop() == "cancel":
                    return None
                sums = self.sums(batch)
                loss += float(sums.loss_sum)
                correct += sums.n_correct
                tokens += sums.n_tokens
        return (loss / tokens, correct / tokens) if tokens else None


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch: a permutation fixed by (seed, epoch)."""
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def step_batch(dataset: Dataset[Item], hp: ResolvedHyperparameters, seed: int,
               step: int) -> list[Item]:
    """The examples of optimizer step ``step`` (0-based)."""
    per_epoch = steps_per_epoch(len(dataset.examples), hp.batch_size)
    epoch, index = divmod(step, per_epoch)
    order = epoch_order(len(dataset.examples), seed, epoch)
    return [dataset.examples[i] for i in order[index * hp.batch_size:(index + 1) * hp.batch_size]]


def valid_batch(dataset: Dataset[Item], size: int, seed: int, draw: int) -> list[Item]:
    """The ``draw``-th small validation batch: successive slices of one seeded permutation."""
    n = len(dataset.examples)
    order = epoch_order(n, seed + 7919, 0)
    start = draw * size % n
    return [dataset.examples[i] for i in (order + order)[start:start + min(size, n)]]


def make_optimizer(model: Any, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay,
                             foreach=True)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                   warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``warmup_fraction`` of the steps, then linear decay towards 0.

    Step ``s`` (0-based) uses ``(s + 1) / warmup`` during warmup and
    ``(total - s) / (total - warmup)`` after it, so neither the first nor the last step has a
    zero learning rate.
    """
    warmup = max(1, math.ceil(total_steps * warmup_fraction))

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return max(0.0, (total_steps - s) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(engine: Engine, examples: Sequence[Example], should_stop: ShouldStop,
               ) -> tuple[float, float, int] | None:
    """Forward + backward over the packed examples; gradients summed, scaled to the mean.

    Returns (mean loss, mean token accuracy, tokens seen) or ``None`` when cancelled mid-step.
    """
    batches = pack(examples, engine.token_budget)
    n_trained = sum(int(b.targets.shape[0]) for b in batches)
    loss = 0.0
    correct = 0
    for batch in batches:
        if should_stop() == "cancel":
            return None
        sums = engine.sums(batch)
        (sums.loss_sum / n_trained).backward()
        loss += float(sums.loss_sum.detach())
        correct += sums.n_correct
    return loss / n_trained, correct / n_trained, sum(b.example_tokens for b in batches)


Metrics = dict[str, float]


class Objective(Protocol):
    """What one optimizer step computes, and how a batch is evaluated.

    Metric names come without a prefix (``loss``, ``mean_token_accuracy``, ...); the loop adds
    ``train_``, ``valid_`` or ``full_valid_``. ``csv_columns`` maps results.csv columns to
    the loop's prefixed metric names.
    """

    engine: Engine
    csv_columns: dict[str, str]

    def train_step(self, items: Sequence[Any], should_stop: ShouldStop,
                   ) -> tuple[Metrics, int] | None:
        """Forward + backward (gradients summed, scaled to the mean); the step's metrics and
        the tokens seen, or ``None`` when cancelled mid-step."""
        ...

    def evaluate(self, items: Sequence[Any], should_stop: ShouldStop | None = None,
                 ) -> Metrics | None:
        """Metrics of ``items`` without gradients; ``None`` if cancelled or empty."""
        ...


class SupervisedObjective:
    """Next-token cross-entropy on the trained tokens, and token accuracy."""

    # OpenAI's results file names the training accuracy column ``train_accuracy``.
    csv_columns = {"step": "step", "train_loss": "train_loss",
                   "train_accuracy": "train_mean_token_accuracy", "valid_loss": "valid_loss",
                   "valid_mean_token_accuracy": "valid_mean_token_accuracy"}

    def __init__(self, engine: Engine):
        self.engine = engine

    def train_step(self, items: Sequence[Example], should_stop: ShouldStop,
                   ) -> tuple[Metrics, int] | None:
        done = train_step(self.engine, items, should_stop)
        if done is None:
            return None
        loss, accuracy, tokens = done
        return {"loss": loss, "mean_token_accuracy": accuracy}, tokens

    def evaluate(self, items: Sequence[Example], should_stop: ShouldStop | None = None,
                 ) -> Metrics | None:
        result = self.engine.evaluate(items, should_stop)
        return None if result is None else {"loss": result[0], "mean_token_accuracy": result[1]}


@dataclass
class Loop:
    """Everything ``train`` needs; built by :func:`tunegate.training.run.run_training`."""

    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_set: Dataset[Any]
    valid_set: Dataset[Any] | None
    hp: ResolvedHyperparameters
    seed: int
    work_dir: str
    options: TrainerOptions
    emit: Emit
    should_stop: ShouldStop
    governor: ThreadGovernor | None = None  # CPU only
    # Every metrics and checkpoint message of the run so far (tunegate.training.journal).
    reported: list[journal.Reported] = field(default_factory=list)

    def report(self, message: journal.Reported) -> None:
        self.reported.append(message)
        self.emit(message)

    def save_state(self, progress: state.Progress) -> None:
        """The resumable state, after the journal of what the run reported up to it."""
        journal.save(self.work_dir, self.reported)
        state.save_run_state(self.work_dir, self.engine.model, self.optimizer, self.scheduler,
                             progress)

    @property
    def engine(self) -> Engine:
        return self.objective.engine

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.train_set.examples), self.hp.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.hp.n_epochs

    @property
    def valid_every(self) -> int:
        return (self.options.valid_every or self.hp.eval_interval
                or max(1, math.ceil(self.total_steps / VALIDATIONS_PER_RUN)))


def train(loop: Loop, progress: state.Progress) -> RunStatus:
    """Run steps ``progress.step + 1 .. total``; ``progress`` is updated in place."""
    model = loop.engine.model
    model.train()
    started, first_step = time.monotonic(), progress.step
    while progress.step < loop.total_steps:
        if loop.governor is not None and (threads := loop.governor.tick()) is not None:
            loop.emit(note(f"Training now uses {threads} CPU thread(s) "
                           "(following the machine's load)"))
        examples = step_batch(loop.train_set, loop.hp, loop.seed, progress.step)
        step_started = time.monotonic()
        done = loop.objective.train_step(examples, loop.should_stop)
        if done is None:
            return RunStatus.CANCELLED
        step_metrics, tokens = done
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                       loop.options.max_grad_norm)
        learning_rate = float(loop.optimizer.param_groups[0]["lr"])  # the rate this update uses
        loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
        step_seconds = time.monotonic() - step_started
        progress.step += 1
        progress.trained_tokens += tokens
        step = progress.step
        metrics: dict[str, Any] = {"step": step, **_prefixed("train_", step_metrics)}
        epoch_end = step % loop.steps_per_epoch == 0
        if loop.valid_set is not None and not _validate(loop, step, epoch_end, metrics):
            return RunStatus.CANCELLED
        elapsed = time.monotonic() - started
        remaining = elapsed / (step - first_step) * (loop.total_steps - step)
        # Reinforcement's graded answers (tunegate.training.grpo); the other objectives have none.
        take_samples = getattr(loop.objective, "take_samples", None)
        loop.report(StepMetrics(step=step, total_steps=loop.total_steps,
                                trained_tokens=progress.trained_tokens,
                                values={k: v for k, v in metrics.items() if k != "step"},
                                estimated_finish_seconds=round(remaining, 1),
                                learning_rate=learning_rate,
                                tokens_per_second=round(tokens / max(step_seconds, 1e-6), 1),
                                samples=take_samples() if take_samples else []))
        progress.rows.append({column: metrics.get(key)
                              for column, key in loop.objective.csv_columns.items()})
        if epoch_end:
            # No resumable state after the last step: the caller writes the final adapter.
            _checkpoint(loop, progress, metrics, save_state=step < loop.total_steps)
        stop = loop.should_stop()
        if stop == "cancel":
            return RunStatus.CANCELLED
        if stop == "pause" and step < loop.total_steps:
            loop.save_state(progress)
            return RunStatus.PAUSED
    return RunStatus.SUCCEEDED


def _validate(loop: Loop, step: int, epoch_end: bool, metrics: dict[str, Any]) -> bool:
    """Add valid_* (every ``valid_every`` steps and the last) and full_valid_* (epoch ends).

    Reinforcement (an ``eval_interval``) validates on the whole file each time, as OpenAI's
    ``eval_interval`` does, and has no separate full validation.
    """
    assert loop.valid_set is not None
    whole_file = loop.hp.eval_interval is not None
    if step % loop.valid_every == 0 or step == loop.total_steps:
        size = min(loop.hp.batch_size, len(loop.valid_set.examples))
        batch = (loop.valid_set.examples if whole_file else
                 valid_batch(loop.valid_set, size, loop.seed, step // loop.valid_every))
        result = loop.objective.evaluate(batch, loop.should_stop)
        if result is None:
            return False
        metrics.update(_prefixed("valid_", result))
    if epoch_end and not whole_file:
        result = loop.objective.evaluate(loop.valid_set.examples, loop.should_stop)
        if result is None:
            return False
        metrics.update(_prefixed("full_valid_", result))
    return True


def _prefixed(prefix: str, metrics: Metrics) -> dict[str, float]:
    return {prefix + name: value for name, value in metrics.items()}


def _checkpoint(loop: Loop, progress: state.Progress, metrics: dict[str, Any],
                save_state: bool = True) -> None:
    step = progress.step
    folder = state.save_checkpoint(loop.work_dir, step, loop.engine.model,
                                   {k: v for k, v in metrics.items() if k != "step"})
    message = CheckpointSaved(step=step, path=str(folder), metrics=metrics)
    if not save_state:
        loop.report(message)
        return
    # The checkpoint is announced once the resumable state is on disk: whoever sees "Checkpoint
    # created at step N" can count on a crash resuming from step N, not from the start. The
    # journal saved with the state holds the message for a worker that dies before recording it.
    loop.reported.append(message)
    loop.save_state(progress)
    loop.emit(message)
