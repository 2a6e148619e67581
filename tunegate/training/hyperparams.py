"""Resolve ``"auto"`` hyperparameters to numbers (torch-free, pure functions).

Which hyperparameters a method takes, and their bounds, are declared in
:mod:`tunegate.domain.methods`; what ``"auto"`` becomes is decided here. The rules, in one place:

- ``n_epochs``: OpenAI's published rule (openai-cookbook): 3 epochs, raised so that small files
  still see about 100 example-passes (``min(25, 100 // n)`` when ``3 n < 100``) and lowered so
  that huge files stop near 25,000 (``max(1, 25000 // n)`` when ``3 n > 25000``).
- ``batch_size`` (examples per optimizer step): ``ceil(n / 64)`` clamped to 1..32, so an epoch
  has about 64 optimizer steps until the file passes 2,048 examples. Small files keep batch 1
  (what OpenAI reports for them); bigger batches smooth the gradient where there is data for
  it. Throughput does not depend on it: examples are packed and split into micro-batches by
  a token budget anyway (:mod:`tunegate.training.packing`).
- ``learning_rate_multiplier``: ``sqrt(batch_size / 8)`` clamped to 0.5..2, the square-root
  scaling commonly used with Adam. The learning rate is ``BASE_LEARNING_RATE`` times the
  multiplier; at batch 8 that is 1e-3.
- ``BASE_LEARNING_RATE = 1e-3`` for LoRA (r=16, alpha=32) on a ~100M-parameter model: LoRA wants
  higher rates than full fine-tuning and small models tolerate more than the 2e-4 usual for 7B.
  Measured on GSM8K with SmolLM2-135M (batch 8, 12k training tokens, held-out answer loss;
  base 1.58): 2e-4 -> 1.36, 1e-3 -> 1.07, 2e-3 -> 0.99. The middle value is the default: that
  short run favours large steps, and longer runs (3 epochs) need headroom against instability.
- ``beta`` (DPO only): 0.1, OpenAI's documented default and the value most of the DPO paper's
  experiments use. It does not depend on the data: it sets how far (in log-probability ratio to
  the reference) the model may move before the loss stops pushing.
- ``n_epochs``, ``batch_size`` and ``learning_rate_multiplier`` follow the same rules for DPO
  (a pair counts as one example). Measured with SmolLM2-135M on a made-up preference set (16
  pairs, batch 4, 2 epochs, beta 0.1; ``tests/training/test_real_model.py``), the held-out
  log-probability margin of preferred over rejected answers went from -16.2 (base) to +16.2
  at the supervised rate (7.1e-4), +3.7 at half of it and -8.6 at 1e-4, with the loss still
  falling smoothly: nothing argued for a lower DPO rate.

Reinforcement (GRPO, :mod:`tunegate.training.grpo`); an "example" is a prompt:

- ``n_epochs``: the supervised rule, counted in prompts.
- ``batch_size`` (prompts per optimizer step): ``ceil(n / 64)`` clamped to 4..16 (never more
  than the file has). Each prompt brings a group of completions; fewer than 4 prompts per step
  leaves too many steps whose groups all scored alike (no gradient at all).
- ``learning_rate_multiplier``: ``RL_AUTO_LR_MULTIPLIER`` (0.3, a rate of 3e-4), whatever the
  batch. Measured with SmolLM2-135M on the short-answer task of the tests (36 prompts, 4 per
  step, groups of 4, 48-token budget, 18 steps): at 1e-3 the train reward went 0.07 -> 0.90 by
  step 4 and 1.0 from step 10 (answers of 6-7 words); at 3e-4 it rose 0.07 -> 0.43 (step 6)
  -> 0.80 (step 10) -> 0.9, and the held-out reward 0.45 -> 0.76 -> 0.90 at steps 6, 12, 18.
  The lower rate is the default: a policy-gradient step moves the sampling distribution
  itself, and a task harder than this one gives large steps more room to collapse.
- ``compute_multiplier`` (OpenAI: how much compute to spend) sets the **group size**, the
  completions sampled per prompt: ``round(4 * compute_multiplier)`` clamped to 2..16, so
  ``"auto"`` (1.0) samples 4, GRPO's smallest common group.
- ``reasoning_effort`` sets the **completion budget**: 128 new tokens at ``default`` and
  ``medium``, 64 at ``low``, 256 at ``high``. For a base whose chat template has a thinking
  switch (``enable_thinking``, Qwen3's) ``low`` also renders prompts with thinking off and
  ``medium``/``high`` with it on; ``default`` leaves the template's own default. SmolLM2's
  template has no switch: there it is the budget alone.
- ``eval_interval``: about ten validations per run (``ceil(total_steps / 10)``), each over the
  whole validation file; ``eval_samples``: 1 completion per validation prompt.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tunegate.domain.methods import (
    AUTO,
    DpoHyperparameters,
    Method,
    ReinforcementHyperparameters,
)

BASE_LEARNING_RATE = 1e-3

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

EXAMPLES_PER_STEP_DIVISOR = 64
MAX_AUTO_BATCH_SIZE = 32
LR_REFERENCE_BATCH = 8
MIN_AUTO_LR_MULTIPLIER = 0.5
MAX_AUTO_LR_MULTIPLIER = 2.0

AUTO_BETA = 0.1

MIN_RL_BATCH = 4
MAX_RL_BATCH = 16
RL_AUTO_LR_MULTIPLIER = 0.3
GROUP_PER_COMPUTE = 4
MIN_GROUP, MAX_GROUP = 2, 16
COMPLETION_TOKENS = {"default": 128, "low": 64, "medium": 128, "high": 256}
RL_VALIDATIONS_PER_RUN = 10
AUTO_EVAL_SAMPLES = 1
AUTO_COMPUTE_MULTIPLIER = 1.0


@dataclass(frozen=True)
class ResolvedHyperparameters:
    """Concrete values; ``to_dict`` has the OpenAI keys."""

    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None  # DPO only
    # Reinforcement only (OpenAI's names): see the module docstring for what they set.
    compute_multiplier: float | None = None
    eval_interval: int | None = None
    eval_samples: int | None = None
    reasoning_effort: str | None = None

    @property
    def group_size(self) -> int:
        """Completions sampled per prompt (reinforcement)."""
        return group_size(self.compute_multiplier or AUTO_COMPUTE_MULTIPLIER)

    @property
    def completion_tokens(self) -> int:
        """The most new tokens of one completion (reinforcement)."""
        return COMPLETION_TOKENS[self.reasoning_effort or "default"]

    @property
    def learning_rate(self) -> float:
        return BASE_LEARNING_RATE * self.learning_rate_multiplier

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def auto_n_epochs(n_examples: int) -> int:
    """OpenAI's default epoch count for ``n_examples`` (>= 1) training examples."""
    n = max(1, n_examples)
    epochs = TARGET_EPOCHS
    if n * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n)
    elif n * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n)
    return epochs


def auto_batch_size(n_examples: int) -> int:
    """About 64 optimizer steps per epoch, between 1 and 32 examples per step."""
    return min(MAX_AUTO_BATCH_SIZE, max(1, math.ceil(n_examples / EXAMPLES_PER_STEP_DIVISOR)))


def auto_learning_rate_multiplier(batch_size: int) -> float:
    """Square-root scaling around batch 8, clamped to 0.5..2, rounded to 3 decimals."""
    raw = math.sqrt(batch_size / LR_REFERENCE_BATCH)
    return round(min(MAX_AUTO_LR_MULTIPLIER, max(MIN_AUTO_LR_MULTIPLIER, raw)), 3)


def auto_rl_batch_size(n_prompts: int) -> int:
    """Prompts per reinforcement step: ``ceil(n / 64)`` within 4..16, at most ``n``."""
    wanted = max(MIN_RL_BATCH, min(MAX_RL_BATCH, math.ceil(n_prompts / EXAMPLES_PER_STEP_DIVISOR)))
    return max(1, min(n_prompts, wanted))


def group_size(compute_multiplier: float) -> int:
    """Completions per prompt for ``compute_multiplier``: ``round(4 m)`` within 2..16."""
    return max(MIN_GROUP, min(MAX_GROUP, round(GROUP_PER_COMPUTE * compute_multiplier)))


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the last batch may be short, never empty."""
    return max(1, math.ceil(n_examples / batch_size))


def resolve(method: Method, n_examples: int) -> ResolvedHyperparameters:
    """Replace every ``"auto"`` of ``method`` for a file of ``n_examples`` examples; explicit
    values stay as given (the domain checked them when ``method`` was built)."""
    hp = method.hyperparameters
    if isinstance(hp, ReinforcementHyperparameters):
        return _resolve_reinforcement(hp, n_examples)
    n_epochs = auto_n_epochs(n_examples) if hp.n_epochs == AUTO else int(hp.n_epochs)
    batch_size = auto_batch_size(n_examples) if hp.batch_size == AUTO else int(hp.batch_size)
    multiplier = (auto_learning_rate_multiplier(batch_size) if hp.learning_rate_multiplier == AUTO
                  else float(hp.learning_rate_multiplier))
    if not isinstance(hp, DpoHyperparameters):
        return ResolvedHyperparameters(n_epochs, batch_size, multiplier)
    beta = AUTO_BETA if hp.beta == AUTO else float(hp.beta)
    return ResolvedHyperparameters(n_epochs, batch_size, multiplier, beta)


def _resolve_reinforcement(hp: ReinforcementHyperparameters,
                           n_prompts: int) -> ResolvedHyperparameters:
    n_epochs = auto_n_epochs(n_prompts) if hp.n_epochs == AUTO else int(hp.n_epochs)
    batch_size = auto_rl_batch_size(n_prompts) if hp.batch_size == AUTO else int(hp.batch_size)
    multiplier = (RL_AUTO_LR_MULTIPLIER if hp.learning_rate_multiplier == AUTO
                  else float(hp.learning_rate_multiplier))
    compute = (AUTO_COMPUTE_MULTIPLIER if hp.compute_multiplier == AUTO
               else float(hp.compute_multiplier))
    total_steps = steps_per_epoch(n_prompts, batch_size) * n_epochs
    eval_interval = (max(1, math.ceil(total_steps / RL_VALIDATIONS_PER_RUN))
                     if hp.eval_interval == AUTO else int(hp.eval_interval))
    eval_samples = AUTO_EVAL_SAMPLES if hp.eval_samples == AUTO else int(hp.eval_samples)
    return ResolvedHyperparameters(n_epochs, batch_size, multiplier,
                                   compute_multiplier=compute, eval_interval=eval_interval,
                                   eval_samples=eval_samples,
                                   reasoning_effort=hp.reasoning_effort)
