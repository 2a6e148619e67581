"""Varlen attention for packed rows: each example attends only to itself, no mask materialised.

Registered with transformers as ``"tunegate_varlen"``. When the forward call carries
``seq_lens`` (the example lengths of a packed row, see :mod:`tunegate.training.packing`), the
row's queries, keys and values are split per example and each piece runs causal SDPA on its own
(``is_causal=True`` on a square block: the fast fused kernel on CPU and CUDA). With a shared
prefix, each example's own segment attends to the prefix's keys and values plus its own. Without
``seq_lens`` (generation, plain batches) it is transformers' own SDPA attention.

Why not the packed ``position_ids`` path transformers already has: with SDPA it builds a dense
[T, T] block-diagonal mask and runs masked attention over the whole row; on CPU that trained
72 tokens per CPU-second against 105 for this split (GSM8K, rows of ~1,900 tokens;
bench/README.md), and it keeps a [T, T] mask per layer for the backward pass.

Note: transformers builds no attention mask for an implementation it does not know, so padded
*batched* generation needs ``model.set_attn_implementation("sdpa")`` first.
"""

from __future__ import annotations

import contextlib
from typing import Any

from torch.nn.attention import SDPBackend, sdpa_kernel

NAME = "tunegate_varlen"

# SDPA kernels allowed on CUDA. Not cuDNN's: it builds and caches an execution plan for every
# distinct (query, key) length pair, and packed examples bring new lengths at every step, so on
# an H200 a GSM8K run spent most of its time building plans (1,460 tokens/s where the same
# steps with repeated lengths ran at 8,245). Flash attention takes any length as it comes.
CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     scaling: float | None = None, dropout: float = 0.0,
                     seq_lens: list[int] | None = None, shared_prefix: int = 0,
                     suffix_masks: list[Any] | None = None, **kwargs: Any) -> tuple[Any, None]:
    """Attention over [B, H, T, D] tensors; returns [B, T, H, D] like transformers' SDPA.

    With ``shared_prefix`` = P > 0, ``seq_lens[0]`` is the prefix and every later segment
    attends to the prefix and causally to itself (``suffix_masks``, see packing).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if seq_lens is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    # Grouped-query attention without copying the KV heads (measured a little faster on CPU
    # than repeat_interleave, and it is what the fused CUDA kernels expect).
    gqa = query.shape[1] != key.shape[1]
    dropout_p = dropout if module.training else 0.0
    with sdpa_kernel(CUDA_BACKENDS) if query.is_cuda else contextlib.nullcontext():
        output = _per_example(query, key, value, seq_lens, shared_prefix, suffix_masks,
                              scaling, gqa, dropout_p)
    return output.transpose(1, 2).contiguous(), None


def _per_example(query: Any, key: Any, value: Any, seq_lens: list[int], shared_prefix: int,
                 suffix_masks: list[Any] | None, scaling: float | None, gqa: bool,
                 dropout_p: float) -> Any:
    import torch
    import torch.nn.functional as F

    queries, keys, values = (t.split(seq_lens, dim=2) for t in (query, key, value))
    pieces = []
    for index, (q, k, v) in enumerate(zip(queries, keys, values, strict=True)):
        if shared_prefix and index > 0:
            assert suffix_masks is not None
            k = torch.cat((keys[0], k), dim=2)
            v = torch.cat((values[0], v), dim=2)
            pieces.append(F.scaled_dot_product_attention(
                q, k, v, attn_mask=suffix_masks[index - 1], scale=scaling, enable_gqa=gqa,
                dropout_p=dropout_p))
        else:
            pieces.append(F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa, dropout_p=dropout_p))
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)


def register() -> str:
    """Make ``"tunegate_varlen"`` a valid ``attn_implementation``; returns the name. Idempotent."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)
    return NAME
