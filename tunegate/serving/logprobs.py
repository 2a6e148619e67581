"""Token log probabilities in OpenAI's shapes, from llama.cpp's ``completion_probabilities``.

llama.cpp gives, for each generated token, its log probability and the ``n_probs`` most likely
tokens at that position, all from the model's distribution before sampling (so the top ones of
a position sum to at most 1, whatever the temperature or constraint).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Json = dict[str, Any]
MAX_TOP_LOGPROBS = 20  # chat's top_logprobs, as OpenAI
MAX_LEGACY_LOGPROBS = 5  # /v1/completions' logprobs, as OpenAI


def _entry(item: Json) -> Json:
    return {"token": item["token"], "logprob": float(item["logprob"]),
            "bytes": list(item.get("bytes") or item["token"].encode())}


def chat_logprobs(probabilities: Sequence[Json], top: int) -> Json:
    """A chat choice's ``logprobs``: ``content`` has one entry per token, with its ``top``
    alternatives."""
    content = [{**_entry(item), "top_logprobs": [_entry(alt) for alt in
                                                 (item.get("top_logprobs") or [])[:top]]}
               for item in probabilities]
    return {"content": content, "refusal": None}


def legacy_logprobs(probabilities: Sequence[Json], top: int, offset: int = 0) -> Json:
    """A text completion choice's ``logprobs`` (OpenAI's legacy shape); ``offset``: where the
    first token's text starts in the choice's text."""
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for item in probabilities:
        tokens.append(item["token"])
        token_logprobs.append(float(item["logprob"]))
        tops.append({alt["token"]: float(alt["logprob"])
                     for alt in (item.get("top_logprobs") or [])[:top]})
        offsets.append(offset)
        offset += len(item["token"])
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops,
            "text_offset": offsets}
