"""Pack examples into padding-free micro-batches under a token budget.

An optimizer step trains ``batch_size`` examples. They are laid end to end in one row per
micro-batch (no padding token anywhere); ``position_ids`` restart at 0 for every example and
``seq_lens`` lists the example lengths, which the varlen attention
(:mod:`tunegate.training.attention`) uses to keep attention inside each example. A micro-batch
holds at most ``token_budget`` tokens (one example longer than the budget gets a micro-batch of
its own), so memory stays bounded whatever the batch size; gradients of the micro-batches of one
step are summed before the optimizer step.

``targets`` are the labels already shifted by one inside each example (the token each position
must predict), ``IGNORE`` on each example's last position: nothing leaks across examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunegate.training.data import IGNORE, Example

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MicroBatch:
    """One packed row: tensors of shape [1, T] (``targets`` is [T]), the example lengths, and
    which of the packed examples (indices into ``pack``'s argument) lie in it, in row order."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    targets: torch.Tensor
    seq_lens: list[int]
    indices: list[int]

    @property
    def n_tokens(self) -> int:
        return sum(self.seq_lens)

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(self.input_ids.to(device), self.position_ids.to(device),
                          self.targets.to(device), self.seq_lens, self.indices)


def plan(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group example indices into micro-batches of at most ``token_budget`` tokens.

    First-fit decreasing: longest first, each into the first group with room. Deterministic,
    and near-optimal for the few groups a step needs. Every index appears exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    room: list[int] = []
    for index in order:
        size = lengths[index]
        for g, free in enumerate(room):
            if size <= free:
                groups[g].append(index)
                room[g] -= size
                break
        else:
            groups.append([index])
            room.append(token_budget - size)
    return groups


def pack(examples: Sequence[Example], token_budget: int) -> list[MicroBatch]:
    """The micro-batches that together hold ``examples`` exactly once, without padding."""
    import torch

    batches = []
    for group in plan([example.n_tokens for example in examples], token_budget):
        ids: list[int] = []
        positions: list[int] = []
        targets: list[int] = []
        for index in group:
            example = examples[index]
            ids.extend(example.input_ids)
            positions.extend(range(example.n_tokens))
            targets.extend(example.labels[1:])
            targets.append(IGNORE)
        batches.append(MicroBatch(
            input_ids=torch.tensor([ids], dtype=torch.long),
            position_ids=torch.tensor([positions], dtype=torch.long),
            targets=torch.tensor(targets, dtype=torch.long),
            seq_lens=[examples[index].n_tokens for index in group],
            indices=group,
        ))
    return batches
