"""Cross-entropy over the 49k vocabulary without materialising the logits of the whole row.

Only positions with a target (assistant tokens) need logits at all, so the hidden states are
first gathered there. Those rows go through the frozen output projection in chunks; each chunk's
loss, argmax hits and gradient with respect to the hidden states are computed in the forward
pass (``(softmax - onehot) @ W``), and the chunk's logits are freed at once. Backward then only
scales the stored gradient. Peak memory is one chunk of logits instead of [T, vocab] logits,
softmax and their gradient (for 4,096 tokens: 0.8 GB each), at no extra FLOPs. The output
projection must be frozen (true for LoRA: no gradient flows to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tunegate.training.data import IGNORE

# One chunk holds about this many float32 logits (512 rows of SmolLM2's 49,152: 100 MB); a
# larger vocabulary gets fewer rows per chunk (Llama 3's 128,256: 196), not a larger chunk.
CHUNK_ELEMENTS = 512 * 49_152
MIN_CHUNK_ROWS = 32


def chunk_rows_for(vocab: int) -> int:
    """Rows per chunk of logits for a vocabulary of ``vocab`` tokens."""
    return max(MIN_CHUNK_ROWS, CHUNK_ELEMENTS // max(1, vocab))


@dataclass(frozen=True)
class LossSums:
    """Sums over the trained positions of a micro-batch (divide by ``n_tokens`` for means)."""

    loss_sum: torch.Tensor  # differentiable scalar
    n_correct: int
    n_tokens: int


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Per-position cross-entropy [N] and the argmax hit count; backward scales stored rows."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        losses = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = hidden[start:start + chunk_rows]
            wanted = targets[start:start + chunk_rows]
            logits = F.linear(rows, weight).float()
            log_probs = torch.log_softmax(logits, dim=-1)
            losses[start:start + chunk_rows] = -log_probs.gather(1, wanted[:, None])[:, 0]
            correct += (logits.argmax(dim=-1) == wanted).sum()
            if grad_hidden is not None:
                grad_logits = log_probs.exp_()  # softmax, in place: log_probs is not needed again
                grad_logits[torch.arange(wanted.shape[0], device=wanted.device), wanted] -= 1.0
                grad_hidden[start:start + chunk_rows] = grad_logits.to(weight.dtype) @ weight
        ctx.save_for_backward(grad_hidden if grad_hidden is not None else hidden.new_empty(0))
        ctx.mark_non_differentiable(correct)
        return losses, correct

    @staticmethod
    def backward(ctx: Any, grad_losses: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        # Row i of the stored gradient is d loss_i / d hidden_i; each loss has its own weight
        # (1 for a plain sum, a per-sequence DPO coefficient for preference training).
        (grad_hidden,) = ctx.saved_tensors
        return (grad_hidden * grad_losses.to(grad_hidden.dtype)[:, None], None, None, None)


def _select(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
            rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    hidden = hidden.reshape(-1, hidden.shape[-1])
    if rows is None:
        keep = targets != IGNORE
        selected, wanted = hidden[keep], targets[keep]
    else:
        selected, wanted = hidden[rows], targets
    if selected.dtype != weight.dtype:  # e.g. hidden states under autocast
        selected = selected.to(weight.dtype)
    return selected, wanted


def causal_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                   rows: torch.Tensor | None = None, chunk_rows: int | None = None) -> LossSums:
    """Summed cross-entropy and argmax hits of ``hidden @ weight.T`` against ``targets``.

    ``hidden`` is [T, H] (any leading shape is flattened). Either ``targets`` is [T] with
    ``IGNORE`` where nothing is trained, or ``rows`` [N] names the positions (repeats allowed)
    that predict ``targets`` [N]. Equals ``F.cross_entropy(logits, targets, reduction="sum")``.
    """
    selected, wanted = _select(hidden, weight, targets, rows)
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        losses, correct = _FusedLinearCrossEntropy.apply(
            selected, weight, wanted, chunk_rows or chunk_rows_for(weight.shape[0]))
    return LossSums(losses.sum(), int(correct), int(wanted.shape[0]))


def token_log_probs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                    rows: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
    """Differentiable log-probability [N] of each ``targets[i]`` predicted at ``rows[i]``.

    Same memory profile as :func:`causal_lm_loss` (no [T, vocab] tensor is kept).
    """
    selected, wanted = _select(hidden, weight, targets, rows)
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        losses, _ = _FusedLinearCrossEntropy.apply(
            selected, weight, wanted, chunk_rows or chunk_rows_for(weight.shape[0]))
    return -losses
