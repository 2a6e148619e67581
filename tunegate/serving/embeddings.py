"""OpenAI embeddings (``/v1/embeddings``), computed by the llama.cpp model pool.

A request is checked first (``embedding_request``: the shape of ``input``, its size, the
encoding, ``dimensions``), then each text input is tokenized by the model's own tokenizer and
measured against its context, token inputs are checked against its vocabulary, and the inputs
are embedded by the model's process (``ServedModel.embed``; the engine's docstring says how:
mean of the last hidden states, unit length, one input at a time). Vectors are shortened where
``dimensions`` asks (``shorten``, OpenAI's way: the first components, back to unit length) and
sent as floats or as base64 of little-endian float32 (``encode_base64``), as OpenAI sends them.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.errors import InvalidRequest
from tunegate.serving.leases import lease
from tunegate.serving.model import ServedModel
from tunegate.serving.pool import ModelFiles, ModelPool

# OpenAI's limits: inputs in one request, and tokens summed over them.
MAX_INPUTS = 2048
MAX_REQUEST_TOKENS = 300_000
ENCODINGS = ("float", "base64")
INPUT_SHAPES = ("a string, an array of strings, an array of token ids (integers) or an array "
                "of token arrays")

Json = dict[str, Any]
Input = str | tuple[int, ...]  # a text, or the token ids of one


@dataclass(frozen=True)
class EmbeddingRequest:
    """One embeddings request, checked and normalized (one entry of ``inputs`` per vector)."""

    model: str
    inputs: tuple[Input, ...]
    encoding_format: str = "float"
    dimensions: int | None = None  # None: the model's full width


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def embedding_request(body: Mapping[str, Any]) -> EmbeddingRequest:
    """``body`` checked (400 naming the parameter) and normalized; ``user`` is ignored."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must name the model to embed with.", param="model",
                             code="invalid_value")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding_format must be one of {', '.join(ENCODINGS)}.",
                             param="encoding_format", code="invalid_value")
    dimensions = body.get("dimensions")
    if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
        raise InvalidRequest("dimensions must be a positive integer.", param="dimensions",
                             code="invalid_value")
    return EmbeddingRequest(model, _inputs(body.get("input")), encoding, dimensions)


def _inputs(value: Any) -> tuple[Input, ...]:
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(_is_int(item) for item in value):
        items = [value]  # one input given as token ids
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidRequest(f"input must be {INPUT_SHAPES}.", param="input", code="invalid_type")
    if not items:
        raise InvalidRequest("input is an empty array: give at least one text to embed.",
                             param="input", code="empty_input")
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(f"input holds {len(items)} items; at most {MAX_INPUTS} can be "
                             "embedded in one request.", param="input", code="too_many_inputs")
    inputs = tuple(_input(item, index) for index, item in enumerate(items))
    if len({type(item) for item in inputs}) > 1:
        raise InvalidRequest(f"input mixes texts and token arrays; input must be {INPUT_SHAPES}.",
                             param="input", code="invalid_type")
    return inputs


def _input(item: Any, index: int) -> Input:
    if isinstance(item, str):
        if not item:
            raise InvalidRequest(f"input[{index}] is an empty string: each input needs some text.",
                                 param="input", code="empty_input")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:  # JSON lets "\ud800" through; no tokenizer can read it
            raise InvalidRequest(f"input[{index}] is not valid Unicode text (it holds a lone "
                                 "surrogate).", param="input", code="invalid_text") from None
        return item
    if not isinstance(item, list) or not all(_is_int(token) for token in item):
        raise InvalidRequest(f"input[{index}] is neither a string nor an array of token ids; "
                             f"input must be {INPUT_SHAPES}.", param="input", code="invalid_type")
    if not item:
        raise InvalidRequest(f"input[{index}] is an empty token array.", param="input",
                             code="empty_input")
    if min(item) < 0:
        raise InvalidRequest(f"input[{index}] holds the token id {min(item)}; token ids are not "
                             "negative.", param="input", code="invalid_token")
    return tuple(item)


def run(pool: ModelPool, files: ModelFiles, request: EmbeddingRequest) -> Json:
    """OpenAI's embeddings ``list`` for ``request``, from the model in ``files``."""
    vectors, tokens = embed(pool, files, request)
    data = [{"object": "embedding", "index": index,
             "embedding": encode_base64(vector) if request.encoding_format == "base64"
             else vector} for index, vector in enumerate(vectors)]
    return {"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def embed(pool: ModelPool, files: ModelFiles,
          request: EmbeddingRequest) -> tuple[list[list[float]], int]:
    """The vectors of ``request.inputs`` (in order, shortened to ``dimensions``) and the number
    of tokens they were computed from."""
    with lease(pool, files) as model:
        width, full = _width(model, request.dimensions), model.width
        prompts = _prompts(model, request.inputs)
        vectors = model.embed(prompts)
    if width < full:
        vectors = [shorten(vector, width) for vector in vectors]
    return vectors, sum(map(len, prompts))


def _width(model: ServedModel, dimensions: int | None) -> int:
    if dimensions is None:
        return model.width
    if dimensions > model.width:
        raise InvalidRequest(
            f"dimensions is {dimensions}, but this model's embeddings have {model.width} "
            f"dimensions: ask for {model.width} or fewer.", param="dimensions",
            code="invalid_value")
    return dimensions


def _prompts(model: ServedModel, inputs: Sequence[Input]) -> list[list[int]]:
    """Each input as the tokens it is embedded from, refused when it cannot be."""
    prompts, total = [], 0
    for index, item in enumerate(inputs):
        tokens = model.embedding_input(item) if isinstance(item, str) else list(item)
        if not tokens:
            raise InvalidRequest(f"input[{index}] has no tokens to embed.", param="input",
                                 code="empty_input")
        if len(tokens) > model.n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {model.n_ctx} tokens, but input[{index}] "
                f"has {len(tokens)} tokens. Please reduce the length of the input.",
                param="input", code="context_length_exceeded")
        outside = max(tokens)
        if outside >= model.n_vocab:
            raise InvalidRequest(
                f"input[{index}] holds the token id {outside}, outside this model's vocabulary "
                f"(ids 0 to {model.n_vocab - 1}).", param="input", code="invalid_token")
        total += len(tokens)
        if total > MAX_REQUEST_TOKENS:
            raise InvalidRequest(
                f"The inputs add up to more than {MAX_REQUEST_TOKENS} tokens, the most one "
                "request may embed; send them in several requests.", param="input",
                code="max_tokens_per_request")
        prompts.append(tokens)
    return prompts


def shorten(vector: Sequence[float], dimensions: int) -> list[float]:
    """The first ``dimensions`` components of ``vector`` scaled back to unit length: what OpenAI
    does with ``dimensions`` (its text-embedding-3 models are trained for it; these base
    models are not, so short vectors keep less of the meaning than OpenAI's do)."""
    head = [float(value) for value in vector[:dimensions]]
    norm = math.sqrt(sum(value * value for value in head))
    return [value / norm for value in head] if norm > 0 else head


def encode_base64(vector: Sequence[float]) -> str:
    """``vector`` as OpenAI's ``base64`` encoding: little-endian float32, base64 (standard
    alphabet, padded); ``numpy.frombuffer(base64.b64decode(s), dtype="<f4")`` reads it back."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
