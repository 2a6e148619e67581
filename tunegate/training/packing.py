"""Pack examples into padding-free micro-batches under a token budget, sharing common prefixes.

An optimizer step trains ``batch_size`` examples. They are laid end to end in one row per
micro-batch (no padding token anywhere); ``position_ids`` restart at 0 for every example and
the varlen attention (:mod:`tunegate.training.attention`) keeps attention inside each example.
A micro-batch holds at most ``token_budget`` computed tokens besides a shared prefix (one
example longer than the budget gets a micro-batch of its own), so memory stays bounded
(below ``max_seq_len + token_budget`` tokens) whatever the batch size; gradients of the
micro-batches of one step are summed before the optimizer step.

**Shared prefix.** When the examples of a step start with the same tokens (a system prompt,
and above all a tool list: every row of a function-calling file carries the same schemas,
~1,500 of its ~1,660 tokens in OpenAI's drone example), the row holds that prefix once,
followed by each example's remainder, whose positions continue after the prefix and which
attends to the prefix and to itself. A causal model's prefix states do not depend on what
follows, so every example computes exactly what it computes alone, for a fraction of the work.
Prefix sharing is used when it saves at least ``MIN_SHARED_FRACTION`` of a step's tokens.

**Loss targets** are explicit (row, token) pairs: each example contributes the positions it
trains, shifted by one inside the example, so nothing is predicted across examples; a shared
prefix position trained by several examples appears once per example, exactly as if each had
been computed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunegate.training.data import IGNORE, Example

if TYPE_CHECKING:
    import torch

MIN_SHARED_FRACTION = 0.1  # share a prefix only when it saves >= 10 % of the step's tokens


@dataclass(frozen=True)
class MicroBatch:
    """One packed row and how to read it.

    ``input_ids``/``position_ids`` are [1, T]. The row is ``prefix`` shared tokens, then one
    segment per example of the lengths in ``seq_lens`` (example length minus the prefix).
    ``target_rows``/``targets`` ([N]) are the trained positions and the tokens they predict.
    ``indices`` says which of the packed examples (indices into ``pack``'s argument) lie in it,
    in row order; ``example_tokens`` counts their tokens in full (prefix once per example).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    target_rows: torch.Tensor
    targets: torch.Tensor
    seq_lens: list[int]
    indices: list[int]
    prefix: int = 0
    suffix_masks: list[torch.Tensor] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        """Tokens computed (the row's length)."""
        return self.prefix + sum(self.seq_lens)

    @property
    def example_tokens(self) -> int:
        return sum(self.prefix + length for length in self.seq_lens)

    def attention_kwargs(self) -> dict[str, Any]:
        """What the varlen attention needs, passed through the model's forward kwargs."""
        if not self.prefix:
            return {"seq_lens": self.seq_lens}
        return {"seq_lens": [self.prefix, *self.seq_lens], "shared_prefix": self.prefix,
                "suffix_masks": self.suffix_masks}

    def to(self, device: torch.device) -> MicroBatch:
        return MicroBatch(self.input_ids.to(device), self.position_ids.to(device),
                          self.target_rows.to(device), self.targets.to(device), self.seq_lens,
                          self.indices, self.prefix, [m.to(device) for m in self.suffix_masks])


def shared_prefix(examples: Sequence[Example]) -> int:
    """Tokens every example starts with, if sharing them is worth it (else 0).

    Always shorter than the shortest example, so each keeps at least one token of its own.
    """
    if len(examples) < 2:
        return 0
    first = examples[0].input_ids
    common = min(example.n_tokens for example in examples) - 1
    for example in examples[1:]:
        ids = example.input_ids
        n = 0
        while n < common and ids[n] == first[n]:
            n += 1
        common = n
    saved = common * (len(examples) - 1)
    return common if saved >= MIN_SHARED_FRACTION * sum(e.n_tokens for e in examples) else 0


def plan(lengths: Sequence[int], token_budget: int, prefix: int = 0) -> list[list[int]]:
    """Group example indices into micro-batches of at most ``token_budget`` tokens of their own.

    First-fit decreasing: longest first, each into the first group with room. A member costs
    ``length - prefix``; the shared prefix comes on top, once per group (it may be longer than
    the budget: a tool list often is). Deterministic; every index appears once.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    room: list[int] = []
    for index in order:
        size = lengths[index] - prefix
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
    """The micro-batches that together compute ``examples`` exactly once, without padding."""
    prefix = shared_prefix(examples)
    groups = plan([example.n_tokens for example in examples], token_budget, prefix)
    return [_row([examples[i] for i in group], group, prefix) for group in groups]


def _row(members: list[Example], indices: list[int], prefix: int) -> MicroBatch:
    import torch

    ids = list(members[0].input_ids[:prefix])
    positions = list(range(prefix))
    rows: list[int] = []
    targets: list[int] = []
    for example in members:
        start = len(ids)  # where this example's own tokens begin in the row
        ids.extend(example.input_ids[prefix:])
        positions.extend(range(prefix, example.n_tokens))
        # Position p of the example predicts its token p + 1; p < prefix lives in the shared part.
        for p, label in enumerate(example.labels[1:]):
            if label != IGNORE:
                rows.append(p if p < prefix else start + p - prefix)
                targets.append(label)
    lengths = [example.n_tokens - prefix for example in members]
    masks = [_suffix_mask(prefix, length) for length in lengths] if prefix else []
    return MicroBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        target_rows=torch.tensor(rows, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        seq_lens=lengths, indices=indices, prefix=prefix, suffix_masks=masks)


def _suffix_mask(prefix: int, length: int) -> torch.Tensor:
    """[length, prefix + length]: every query sees the whole prefix and, causally, its segment."""
    import torch

    mask = torch.ones(length, prefix + length, dtype=torch.bool)
    mask[:, prefix:] = torch.ones(length, length, dtype=torch.bool).tril()
    return mask
