"""``logit_bias``: OpenAI's per-token bias, made real through llama.cpp's own ``logit_bias``.

OpenAI's keys are token ids of its tokenizer; here they are the served model's own (what
``/tokenize`` of the model gives, or the GGUF's vocabulary). The bias is added to the token's
logit before sampling, as OpenAI does: -100 makes a token practically impossible, +100 makes it
practically the only choice. llama.cpp silently drops ids outside the vocabulary, so they are
refused here instead: a bias that does nothing is a mistake the client should hear about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunegate.errors import InvalidRequest

PARAM = "logit_bias"
LIMIT = 100  # |bias| at most, as OpenAI

Bias = tuple[tuple[int, float], ...]


def parse_logit_bias(value: Any) -> Bias:
    """``{"token id": bias}`` as ``((id, bias), ...)``; a key that is not a token id or a bias
    outside [-100, 100] is a 400 naming ``logit_bias``. ``None`` or ``{}``: no bias."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise _refuse("logit_bias must be an object mapping token ids to biases.")
    biases = []
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()):
            raise _refuse(f"Invalid key in 'logit_bias': {key!r} is not a token id (a "
                          "non-negative integer written as a string).")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -LIMIT <= bias <= LIMIT:
            raise _refuse(f"Invalid value for 'logit_bias' token {key}: {bias!r} is not a "
                          f"number between -{LIMIT} and {LIMIT}.")
        biases.append((int(key), float(bias)))
    return tuple(biases)


def check_vocabulary(bias: Bias, n_vocab: int, model: str) -> None:
    """Refuse (400, ``logit_bias``) a token id the model's vocabulary does not have."""
    for token, _ in bias:
        if token >= n_vocab:
            raise _refuse(f"Invalid key in 'logit_bias': {token}. The model {model} has "
                          f"{n_vocab} tokens, so the largest token id is {n_vocab - 1}.")


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, param=PARAM, code="invalid_value")
