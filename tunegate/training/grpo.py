"""Group relative policy optimization (Shao et al., 2024) on the LoRA adapter.

One optimizer step, for ``batch_size`` prompts:

1. **Rollouts**: ``G`` completions per prompt sampled from the current adapter
   (:mod:`tunegate.training.rollout`; ``G`` and the completion budget come from
   ``compute_multiplier`` and ``reasoning_effort``, :mod:`tunegate.training.hyperparams`).
2. **Rewards** from the job's grader (:mod:`tunegate.training.rewards`).
3. **Advantages**, relative to the group: ``A_i = (r_i - mean(r)) / (std(r) + 1e-4)`` over the
   completions of the same prompt (TRL's default scaling). A group whose rewards are all equal
   has no advantage and costs no forward pass; its share is ``zero_std_groups``.
4. **Loss**, token-level (DAPO's normalisation, TRL's default ``loss_type``): the sum over every
   completion token of ``-A_i * ratio_t`` divided by the number of completion tokens of the step,
   so a long answer weighs by its tokens, not as one sequence. ``ratio_t`` is
   ``exp(log π(t) - log π_old(t))``; with one update per batch of rollouts (TRL's default
   ``num_iterations=1``) the old policy *is* the current one, the ratio is 1 in value and PPO's
   clip ``[1 - ε, 1 + ε]`` never binds, so it is left out: the gradient is exactly
   ``-A_i ∇ log π(t)``. No reference model and no KL term (``beta = 0``, TRL's and Unsloth's
   default): nothing but the adapter is held, as for supervised training.

The completions of one prompt share its tokens in the packed forward
(:mod:`tunegate.training.packing`), so a prompt is computed once per group, not ``G`` times.

Metrics per step (OpenAI's names where it has them): ``reward_mean``, ``reward_std`` (over the
step's completions), ``zero_std_groups``, ``completion_length`` (tokens), ``grader_errors``
(samples without a reward) and ``reward_<name>`` per part of a multi grader; validation gives
``reward_mean`` (and the parts) over ``eval_samples`` completions of every validation prompt.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tunegate.training import rollout
from tunegate.training.data import IGNORE, Example
from tunegate.training.hyperparams import ResolvedHyperparameters
from tunegate.training.loss import token_log_probs
from tunegate.training.messages import graded_sample
from tunegate.training.packing import pack
from tunegate.training.rewards import Reward, Rewarder, check_error_share, sub_grader_names
from tunegate.training.rft_data import Prompt
from tunegate.training.trainer import Engine, Metrics, ShouldStop

STD_EPSILON = 1e-4
# Training answers a step's metrics carry (one per prompt, the first ones): the dashboard's.
TRAIN_SAMPLES_SHOWN = 4
TRAIN_METRICS = ("reward_mean", "reward_std", "zero_std_groups", "completion_length",
                 "grader_errors")


def group_advantages(rewards: Sequence[float | None], group_size: int) -> list[float]:
    """Each completion's advantage within its group of ``group_size`` consecutive rewards.

    A ``None`` reward (a grader error) gets 0 and is left out of its group's mean and spread.
    """
    advantages = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start:start + group_size]
        scored = torch.tensor([r for r in group if r is not None], dtype=torch.float64)
        if scored.numel() < 2 or float(scored.std()) == 0.0:
            advantages += [0.0] * len(group)
            continue
        mean, std = float(scored.mean()), float(scored.std())
        advantages += [0.0 if r is None else (r - mean) / (std + STD_EPSILON) for r in group]
    return advantages


def zero_std_share(rewards: Sequence[float | None], group_size: int) -> float:
    """Share of groups whose scored rewards are all equal (they teach nothing)."""
    groups = [[r for r in rewards[s:s + group_size] if r is not None]
              for s in range(0, len(rewards), group_size)]
    return sum(1 for g in groups if len(set(g)) <= 1) / max(1, len(groups))


def completion_example(prompt: Prompt, completion: rollout.Completion) -> Example:
    """The prompt followed by the completion, only the completion's tokens trained."""
    ids = [*prompt.input_ids, *completion.token_ids]
    labels = [IGNORE] * prompt.n_tokens + list(completion.token_ids)
    return Example(ids, labels, prompt.line)


def policy_gradient_loss(log_probs: torch.Tensor, advantages: torch.Tensor,
                         n_tokens: int) -> torch.Tensor:
    """``sum_t -A_t * exp(logp_t - stopgrad(logp_t))`` over ``n_tokens``: the ratio is 1 in
    value, so the loss is 0 in value and its gradient ``-A_t * grad logp_t / n_tokens``."""
    ratio = torch.exp(log_probs - log_probs.detach())
    return -(advantages * ratio).sum() / n_tokens


@dataclass(frozen=True)
class Scored:
    """A batch of completions and their rewards, prompt-major."""

    completions: list[rollout.Completion]
    rewards: list[Reward]

    def values(self) -> list[float | None]:
        return [r.value for r in self.rewards]

    def samples(self, split: str, prompts: Sequence[Prompt], every: int = 1,
                limit: int | None = None) -> list[dict[str, object]]:
        """The graded answers as ``StepMetrics.samples`` entries (every ``every``-th)."""
        chosen = list(zip(self.completions, self.rewards, strict=True))[::every][:limit]
        return [graded_sample(split, prompts[c.prompt].line, c.text, r.value, dict(r.parts),
                              r.error) for c, r in chosen]

    def metrics(self, parts: Sequence[str]) -> Metrics:
        values = [v for v in self.values() if v is not None]
        tensor = torch.tensor(values or [0.0], dtype=torch.float64)
        out: Metrics = {"reward_mean": float(tensor.mean()),
                        "reward_std": float(tensor.std()) if len(values) > 1 else 0.0}
        for name in parts:
            scores = [r.parts[name] for r in self.rewards if name in r.parts]
            out[f"reward_{name}"] = sum(scores) / len(scores) if scores else 0.0
        return out


class ReinforcementObjective:
    """The loop's :class:`tunegate.training.trainer.Objective` for reinforcement (GRPO)."""

    def __init__(self, engine: Engine, tokenizer: object, rewarder: Rewarder,
                 hp: ResolvedHyperparameters, seed: int,
                 completion_tokens: int | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.rewarder = rewarder
        self.group_size = hp.group_size
        self.completion_tokens = completion_tokens or hp.completion_tokens
        self.eval_samples = hp.eval_samples or 1
        self.seed = seed
        self.parts = sub_grader_names(rewarder.grader)
        names = [*TRAIN_METRICS, *(f"reward_{p}" for p in self.parts)]
        valid = ["reward_mean", *(f"reward_{p}" for p in self.parts)]
        self.csv_columns = {"step": "step", **{f"train_{m}": f"train_{m}" for m in names},
                            **{f"valid_{m}": f"valid_{m}" for m in valid}}
        self.pending_samples: list[dict[str, object]] = []

    def _score(self, prompts: Sequence[Prompt], n: int,
               should_stop: ShouldStop | None) -> Scored | None:
        with self.engine.evaluating():
            completions = rollout.sample(self.engine.model, self.tokenizer,
                                         [p.input_ids for p in prompts], n,
                                         self.completion_tokens, self.engine.device, should_stop)
        if completions is None or (should_stop is not None and should_stop() == "cancel"):
            return None
        rewards = self.rewarder.rewards([c.text for c in completions],
                                        [prompts[c.prompt].item for c in completions])
        check_error_share(rewards)
        return Scored(completions, rewards)

    def train_step(self, items: Sequence[Prompt], should_stop: ShouldStop,
                   ) -> tuple[Metrics, int] | None:
        scored = self._score(items, self.group_size, should_stop)
        if scored is None:
            return None
        advantages = group_advantages(scored.values(), self.group_size)
        n_completion_tokens = sum(len(c.token_ids) for c in scored.completions)
        for index, prompt in enumerate(items):
            if should_stop() == "cancel":
                return None
            group = range(index * self.group_size, (index + 1) * self.group_size)
            if all(advantages[i] == 0.0 for i in group):
                continue  # no gradient: skip its forward and backward
            self._backward(prompt, [scored.completions[i] for i in group],
                           [advantages[i] for i in group], n_completion_tokens)
        self.pending_samples = scored.samples("train", items, every=self.group_size,
                                              limit=TRAIN_SAMPLES_SHOWN)
        metrics = scored.metrics(self.parts)
        metrics["zero_std_groups"] = zero_std_share(scored.values(), self.group_size)
        metrics["completion_length"] = n_completion_tokens / len(scored.completions)
        metrics["grader_errors"] = float(sum(r.error is not None for r in scored.rewards))
        tokens = sum(prompt.n_tokens for prompt in items) * self.group_size + n_completion_tokens
        return metrics, tokens

    def _backward(self, prompt: Prompt, completions: Sequence[rollout.Completion],
                  advantages: Sequence[float], n_tokens: int) -> None:
        """Accumulate the gradient of one group's share of the step's loss."""
        examples = [completion_example(prompt, c) for c in completions]
        engine = self.engine
        for batch in pack(examples, engine.token_budget):
            on_device = batch.to(engine.device)
            log_probs = token_log_probs(engine.hidden(on_device), engine.head_weight,
                                        on_device.targets, on_device.target_rows)
            # Targets come example by example in row order: each token's advantage is its
            # completion's, repeated once per trained token.
            counts = torch.tensor([len(completions[i].token_ids) for i in batch.indices])
            per_token = torch.repeat_interleave(
                torch.tensor([advantages[i] for i in batch.indices], dtype=log_probs.dtype),
                counts).to(engine.device)
            policy_gradient_loss(log_probs, per_token, n_tokens).backward()

    def evaluate(self, items: Sequence[Prompt], should_stop: ShouldStop | None = None,
                 ) -> Metrics | None:
        """Mean reward of ``eval_samples`` completions of every prompt of ``items``, sampled
        under a generator seeded by the run's seed and the prompts (not the training's)."""
        if not items:
            return None
        key = zlib.crc32(",".join(str(p.line) for p in items).encode())
        with rollout.seeded(self.seed * 1_000_003 + key):
            scored = self._score(items, self.eval_samples, should_stop)
        if scored is None:
            return None
        self.pending_samples += scored.samples("valid", items)  # every one: the job's eval run
        return scored.metrics(self.parts)

    def take_samples(self) -> list[dict[str, object]]:
        """The graded answers of the step just done (its training answers shown, its
        validation answers all), once: the loop puts them in the step's metrics."""
        samples, self.pending_samples = self.pending_samples, []
        return samples
