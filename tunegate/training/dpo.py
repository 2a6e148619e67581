"""Direct preference optimization (Rafailov et al., 2023) on the LoRA adapter.

For a pair with chosen answer ``c`` and rejected answer ``r`` to prompt ``x``, with ``log π(y|x)``
the summed log-probability of an answer's trained tokens::

    reward(y)  = beta * (log π_policy(y|x) - log π_reference(y|x))
    loss       = -log sigmoid(reward(c) - reward(r))

The metrics are those DPO users watch (TRL's ``rewards/*``): the loss, ``reward_accuracy``
(share of pairs whose chosen reward is higher), ``reward_margin`` (mean chosen minus rejected
reward), and the mean ``chosen_reward`` and ``rejected_reward``.

**The reference model is the model at the start of training**, and its log-probabilities are
computed once, before the first step, in one forward pass over the data without gradients
(:func:`with_references`); no second copy of the weights is ever held. For a fresh adapter
that is the frozen base (the adapter is disabled while they are computed). For an ``ft:``
starting point it is that fine-tuned model: its adapter is loaded as the trainable starting
weights and the reference is computed with it enabled, before any step changes it. DPO
therefore pulls the model away from the supervised model it started from, not from the raw
base, as it should; and the result is still one adapter on the base, so export and serving
are those of a supervised job. A resumed run recomputes the references from the same starting
weights (before loading the saved state), so it continues with the same numbers. The extra
forward pass costs a third of one epoch's compute; references computed per step with the
adapter disabled would cost as much every epoch, and could not express an ``ft:`` start.

A step's pairs are processed in groups that fit the token budget: each group is one packed
forward (both sides of a pair share the prompt's tokens, see packing) and one backward, so
memory is bounded by the budget whatever the batch size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from tunegate.training.data import IGNORE, Dataset, Example
from tunegate.training.loss import token_log_probs
from tunegate.training.packing import pack
from tunegate.training.preference import PreferencePair
from tunegate.training.trainer import Engine, Metrics, ShouldStop

METRICS = ("loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward")


@dataclass(frozen=True)
class DpoOutput:
    """Per-pair losses (differentiable) and implicit rewards (detached), each [B]."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             reference_chosen: torch.Tensor, reference_rejected: torch.Tensor,
             beta: float) -> DpoOutput:
    """The sigmoid DPO loss of each pair from summed answer log-probabilities [B]."""
    chosen_ratio = policy_chosen - reference_chosen
    rejected_ratio = policy_rejected - reference_rejected
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return DpoOutput(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def sequence_log_probs(engine: Engine, examples: Sequence[Example]) -> torch.Tensor:
    """Summed log-probability of each example's trained tokens [len(examples)].

    Differentiable with respect to the adapter when gradients are enabled.
    """
    total = torch.zeros(len(examples), device=engine.device)
    for batch in pack(examples, engine.token_budget):
        on_device = batch.to(engine.device)
        log_probs = token_log_probs(engine.hidden(on_device), engine.head_weight,
                                    on_device.targets, on_device.target_rows)
        # Targets come example by example in row order (packing), so each token's owner is
        # its example's index repeated once per trained position.
        counts = torch.tensor([_n_targets(examples[i]) for i in batch.indices])
        owners = torch.repeat_interleave(torch.tensor(batch.indices), counts).to(engine.device)
        total = total.index_add(0, owners, log_probs)
    return total


def _n_targets(example: Example) -> int:
    return sum(1 for label in example.labels[1:] if label != IGNORE)


def pair_groups(pairs: Sequence[PreferencePair], token_budget: int) -> Iterator[list[PreferencePair]]:
    """Consecutive pairs whose tokens fit ``token_budget`` together (at least one pair each)."""
    group: list[PreferencePair] = []
    size = 0
    for pair in pairs:
        if group and size + pair.n_tokens > token_budget:
            yield group
            group, size = [], 0
        group.append(pair)
        size += pair.n_tokens
    if group:
        yield group


def _pair_log_probs(engine: Engine, group: Sequence[PreferencePair],
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer log-probabilities of the chosen and of the rejected sides [len(group)]."""
    log_probs = sequence_log_probs(engine, [e for p in group for e in (p.chosen, p.rejected)])
    return log_probs[0::2], log_probs[1::2]


def _policy_and_reference(engine: Engine, group: Sequence[PreferencePair],
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    reference = torch.tensor([p.reference for p in group], device=engine.device)
    return (*_pair_log_probs(engine, group), reference[:, 0], reference[:, 1])


class _Sums:
    """Running sums of the per-pair figures of a step or an evaluation."""

    def __init__(self) -> None:
        self.values = dict.fromkeys(METRICS, 0.0)
        self.count = 0

    def add(self, output: DpoOutput) -> None:
        margins = output.chosen_rewards - output.rejected_rewards
        self.values["loss"] += float(output.losses.detach().sum())
        self.values["reward_accuracy"] += float((margins > 0).sum())
        self.values["reward_margin"] += float(margins.sum())
        self.values["chosen_reward"] += float(output.chosen_rewards.sum())
        self.values["rejected_reward"] += float(output.rejected_rewards.sum())
        self.count += int(output.losses.shape[0])

    def means(self) -> Metrics:
        return {name: total / self.count for name, total in self.values.items()}


class PreferenceObjective:
    """The loop's :class:`tunegate.training.trainer.Objective` for DPO (pairs with references)."""

    csv_columns = {name: name for name in (
        "step", *(f"train_{m}" for m in METRICS), *(f"valid_{m}" for m in METRICS))}

    def __init__(self, engine: Engine, beta: float):
        self.engine = engine
        self.beta = beta

    def train_step(self, items: Sequence[PreferencePair], should_stop: ShouldStop,
                   ) -> tuple[Metrics, int] | None:
        sums = _Sums()
        for group in pair_groups(items, self.engine.token_budget):
            if should_stop() == "cancel":
                return None
            output = dpo_loss(*_policy_and_reference(self.engine, group), self.beta)
            (output.losses.sum() / len(items)).backward()
            sums.add(output)
        return sums.means(), sum(pair.n_tokens for pair in items)

    def evaluate(self, items: Sequence[PreferencePair], should_stop: ShouldStop | None = None,
                 ) -> Metrics | None:
        sums = _Sums()
        with self.engine.evaluating():
            for group in pair_groups(items, self.engine.token_budget):
                if should_stop is not None and should_stop() == "cancel":
                    return None
                sums.add(dpo_loss(*_policy_and_reference(self.engine, group), self.beta))
        return sums.means() if sums.count else None


def with_references(dataset: Dataset[PreferencePair], engine: Engine, *, base_only: bool,
                    should_stop: Callable[[], str | None]) -> Dataset[PreferencePair] | None:
    """``dataset`` with each pair's reference log-probabilities; ``None`` if cancelled.

    ``base_only``: compute them with the adapter disabled (a fresh adapter: the reference is
    the base); otherwise with the adapter as it is now (an ``ft:`` starting point).
    """
    pairs: list[PreferencePair] = []
    adapter_off = engine.model.disable_adapter() if base_only else contextlib.nullcontext()
    with engine.evaluating(), adapter_off:
        for group in pair_groups(dataset.examples, engine.token_budget):
            if should_stop() == "cancel":
                return None
            chosen, rejected = _pair_log_probs(engine, group)
            pairs += [replace(pair, reference=references)
                      for pair, references in zip(group, zip(chosen.tolist(), rejected.tolist(),
                                                              strict=True), strict=True)]
    return replace(dataset, examples=pairs)
