"""The embeddings request checks, the response, ``dimensions`` and the base64 encoding
(tunegate/serving/embeddings.py), without a model.

The same checks run against the real model in tests/inference/test_embeddings_sdk.py; the
model-dependent ones (context length, vocabulary, width) run there only, with a fake model
here named as such."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tunegate.errors import InvalidRequest
from tunegate.serving import embeddings
from tunegate.serving.embeddings import (
    MAX_INPUTS,
    EmbeddingRequest,
    embedding_request,
    encode_base64,
    shorten,
)
from tunegate.serving.pool import ModelFiles


def refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        embedding_request({"model": "m", **body})
    return caught.value


@pytest.mark.parametrize(("value", "inputs"), [
    ("one text", ("one text",)),
    (["a", "b"], ("a", "b")),
    ([1, 2, 3], ((1, 2, 3),)),  # an array of token ids is one input
    ([[1, 2], [3]], ((1, 2), (3,))),
])
def test_every_input_shape_of_openai(value: Any, inputs: tuple[Any, ...]) -> None:
    request = embedding_request({"model": "m", "input": value, "user": "ignored"})
    assert request == EmbeddingRequest("m", inputs, "float", None)


@pytest.mark.parametrize(("value", "code"), [
    ("", "empty_input"),
    ([], "empty_input"),
    (["fine", ""], "empty_input"),
    ([[1], []], "empty_input"),
    ([[-1]], "invalid_token"),
    ([-5, 3], "invalid_token"),
    (["text", [1, 2]], "invalid_type"),
    ([[1, "2"]], "invalid_type"),
    ([True], "invalid_type"),  # booleans are not token ids
    ("a\ud800b", "invalid_text"),  # a lone surrogate, which JSON can carry
    (None, "invalid_type"),
    ({"text": "x"}, "invalid_type"),
    (["x"] * (MAX_INPUTS + 1), "too_many_inputs"),
])
def test_bad_inputs_are_400_naming_input(value: Any, code: str) -> None:
    error = refused({"input": value})
    assert (error.status, error.param, error.code) == (400, "input", code)


def test_the_most_inputs_openai_allows_are_accepted() -> None:
    assert len(embedding_request({"model": "m", "input": ["x"] * MAX_INPUTS}).inputs) == MAX_INPUTS


@pytest.mark.parametrize(("body", "param"), [
    ({"dimensions": 0}, "dimensions"),
    ({"dimensions": -3}, "dimensions"),
    ({"dimensions": 2.5}, "dimensions"),
    ({"dimensions": True}, "dimensions"),
    ({"encoding_format": "int8"}, "encoding_format"),
    ({"model": ""}, "model"),
    ({"model": 7}, "model"),
])
def test_bad_parameters_are_400_naming_them(body: dict[str, Any], param: str) -> None:
    error = refused({"input": "x", **body})
    assert (error.status, error.param) == (400, param)


def test_encoding_and_dimensions_pass_through() -> None:
    request = embedding_request({"model": "m", "input": "x", "encoding_format": "base64",
                                 "dimensions": 8})
    assert (request.encoding_format, request.dimensions) == ("base64", 8)
    assert embedding_request({"model": "m", "input": "x",
                              "encoding_format": None}).encoding_format == "float"


def test_base64_is_little_endian_float32_as_openai_sends_it() -> None:
    vector = [0.5, -1.25, 3.0e-7, 1.0]
    encoded = encode_base64(vector)
    raw = base64.b64decode(encoded, validate=True)
    assert len(raw) == 4 * len(vector)
    assert raw[:4] == bytes.fromhex("0000003f")  # 0.5 as float32, least significant byte first
    assert np.frombuffer(raw, dtype="<f4").tolist() == pytest.approx(vector, rel=1e-7)
    assert encode_base64([]) == ""


def test_shorten_keeps_the_first_components_at_unit_length() -> None:
    short = shorten([3.0, 4.0, 12.0], 2)
    assert short == pytest.approx([0.6, 0.8])
    assert math.isclose(sum(x * x for x in short), 1.0)
    assert shorten([0.0, 0.0, 1.0], 2) == [0.0, 0.0]  # nothing to scale: left as it is


class FakeModel:
    """A stand-in for ServedModel (tests only): 4-wide vectors, a context of 8 tokens, a
    vocabulary of 100 ids; a text's tokens are its characters' codes modulo 100."""

    n_ctx, width, n_vocab = 8, 4, 100

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []

    def embedding_input(self, text: str) -> list[int]:
        return [ord(char) % 100 for char in text]

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        self.calls.append([list(tokens) for tokens in inputs])
        return [[float(len(tokens)), 1.0, 0.0, 0.0] for tokens in inputs]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    model = FakeModel()

    @contextmanager
    def fake_lease(pool: Any, files: ModelFiles):  # type: ignore[no-untyped-def]
        yield model

    monkeypatch.setattr(embeddings, "lease", fake_lease)
    return model


FILES = ModelFiles("m", base=Path("/nonexistent.gguf"))


def run(body: dict[str, Any]) -> dict[str, Any]:
    return embeddings.run(None, FILES, embedding_request({"model": "m", **body}))  # type: ignore[arg-type]


def test_the_response_has_openais_shape_and_counts_tokens(fake_model: FakeModel) -> None:
    answer = run({"input": ["abc", "de"]})
    assert answer == {
        "object": "list", "model": "m",
        "data": [{"object": "embedding", "index": 0, "embedding": [3.0, 1.0, 0.0, 0.0]},
                 {"object": "embedding", "index": 1, "embedding": [2.0, 1.0, 0.0, 0.0]}],
        "usage": {"prompt_tokens": 5, "total_tokens": 5}}
    assert fake_model.calls == [[[97, 98, 99], [0, 1]]]  # tokenized by the model, in order


def test_base64_and_dimensions_in_the_response(fake_model: FakeModel) -> None:
    answer = run({"input": [[5, 6, 7]], "encoding_format": "base64", "dimensions": 2})
    vector = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), dtype="<f4")
    assert vector.tolist() == pytest.approx([3 / math.sqrt(10), 1 / math.sqrt(10)], rel=1e-6)


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"input": "x" * 9}, "input", "context_length_exceeded"),
    ({"input": [[1, 100]]}, "input", "invalid_token"),
    ({"input": "x", "dimensions": 5}, "dimensions", "invalid_value"),
])
def test_what_only_the_model_can_tell_is_400_too(fake_model: FakeModel, body: dict[str, Any],
                                                 param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        run(body)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert fake_model.calls == []  # refused before anything was embedded


def test_too_many_tokens_in_all_is_400(fake_model: FakeModel,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "MAX_REQUEST_TOKENS", 10)
    with pytest.raises(InvalidRequest) as caught:
        run({"input": ["abcd", "efgh", "ijkl"]})
    assert caught.value.code == "max_tokens_per_request"


def test_the_contract_rules_make_generated_requests_acceptable() -> None:
    """What schemathesis sends against a real server (tunegate/contract/rules.py): a served
    model, ids in the vocabulary, ``dimensions`` within the width, few short inputs."""
    from types import SimpleNamespace

    from tunegate.contract import rules

    body = {"model": "drawn", "dimensions": 10**6,
            "input": [[0, 49152, 10**9]] + [[1]] * 10}
    case = SimpleNamespace(operation=SimpleNamespace(label="POST /embeddings"), meta=None,
                           body=body, path_parameters={}, query=None, headers=None)
    rules.acceptable(case, training_file=lambda: "file-x", base_models=["base"],
                     training_content=b"", completable_upload=lambda: ("upload-x", []))
    assert body["model"] == "base" and body["dimensions"] == rules.EMBEDDED_WIDTH
    assert len(body["input"]) == rules.MAX_EMBEDDING_INPUTS
    assert body["input"][0] == [0, 0, 10**9 % rules.EMBEDDED_VOCABULARY]
    request = embedding_request(body)  # and the request still passes the checks
    assert max(max(tokens) for tokens in request.inputs) < rules.EMBEDDED_VOCABULARY
    text = {"model": "drawn", "input": "ü" * 5000}
    case.body = text
    rules.acceptable(case, training_file=lambda: "file-x", base_models=["base"],
                     training_content=b"", completable_upload=lambda: ("upload-x", []))
    assert 0 < len(text["input"].encode()) <= rules.MAX_PROMPT_BYTES
