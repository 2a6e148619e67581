"""Sampling completions from the model as it is now (the current LoRA adapter), for GRPO.

All completions of a step are one batched ``generate`` call with a KV cache: every prompt of
the step repeated ``n`` times, left-padded to one length. On 2 CPU cores a batch of 16
sequences decodes 16 tokens for little more than the cost of one, so batching the whole step
(not prompt by prompt, not sample by sample) is where the time goes down; see
``bench/rft.py`` for the measured rates.

Sampling is plain: temperature 1, no top-k or top-p, so the log-probabilities the loss uses
are those of the distribution that produced the tokens (the policy-gradient estimate is then
unbiased). It draws from torch's global generator, whose state the run saves with its
resumable state, so a resumed run samples what an uninterrupted one would. Validation samples
under a generator of its own (:func:`seeded`), so that it changes nothing of the training.

The varlen attention of training (:mod:`tunegate.training.attention`) builds no padding mask;
generation switches the model to transformers' SDPA for its duration.

A ``should_stop`` that answers ``"cancel"`` ends the generation at the next token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunegate.training import attention

ShouldStop = Callable[[], str | None]


@dataclass(frozen=True)
class Completion:
    """One sampled answer: its tokens (the end-of-turn token included when it was produced),
    its text as a grader sees it, and which prompt of the batch it answers."""

    prompt: int
    token_ids: list[int]
    text: str
    finished: bool  # ended by the end-of-turn token, not by the budget


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Sample with a generator seeded by ``seed``, the global one untouched afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _sdpa(model: Any) -> Iterator[None]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    previous = base.config._attn_implementation
    if previous != attention.NAME:
        yield
        return
    base.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        base.set_attn_implementation(previous)


class _Cancelled(Exception):
    pass


def sample(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], n: int,
           max_new_tokens: int, device: torch.device, should_stop: ShouldStop | None = None,
           ) -> list[Completion] | None:
    """``n`` completions of each prompt, prompt-major (prompt 0's ``n``, then prompt 1's ...);
    ``None`` when cancelled. Call it without gradients (``Engine.evaluating``)."""
    from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

    eos = _end_tokens(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    rows = [list(p) for p in prompts for _ in range(n)]
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                              max_new_tokens=max_new_tokens, eos_token_id=eos,
                              pad_token_id=pad, use_cache=True)

    class StopOnCancel(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> Any:
            if should_stop is not None and should_stop() == "cancel":
                raise _Cancelled
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    try:
        with _sdpa(model):
            output = model.generate(input_ids=input_ids, attention_mask=mask,
                                    generation_config=config,
                                    stopping_criteria=StoppingCriteriaList([StopOnCancel()]))
    except _Cancelled:
        return None
    return [_completion(index // n, row[width:].tolist(), eos, pad, tokenizer)
            for index, row in enumerate(output)]


def _end_tokens(tokenizer: Any) -> list[int]:
    """The tokens that end an answer: the end-of-sequence token (SmolLM2's ``<|im_end|>``)."""
    eos = tokenizer.eos_token_id
    return list(eos) if isinstance(eos, list) else [int(eos)]


def _completion(prompt: int, generated: list[int], eos: list[int], pad: int,
                tokenizer: Any) -> Completion:
    # After its end a finished row is padded to the batch's length; those pads are not its own.
    for position, token in enumerate(generated):
        if token in eos:
            kept, finished = generated[:position + 1], True
            break
    else:
        kept, finished = generated, False
    text = tokenizer.decode(kept, skip_special_tokens=True).strip()
    return Completion(prompt, kept, text, finished)
