"""Token log probabilities in OpenAI's chat and legacy shapes."""

from __future__ import annotations

from tunegate.serving.logprobs import chat_logprobs, legacy_logprobs

ITEMS = [
    {"id": 1, "token": "Par", "bytes": [80, 97, 114], "logprob": -0.5, "top_logprobs": [
        {"id": 1, "token": "Par", "bytes": [80, 97, 114], "logprob": -0.5},
        {"id": 2, "token": "Lon", "bytes": [76, 111, 110], "logprob": -1.5},
        {"id": 3, "token": "Ber", "bytes": [66, 101, 114], "logprob": -2.5}]},
    {"id": 4, "token": "is", "bytes": [105, 115], "logprob": -0.1, "top_logprobs": [
        {"id": 4, "token": "is", "bytes": [105, 115], "logprob": -0.1}]},
]


def test_chat_shape_keeps_the_top_asked_for() -> None:
    shaped = chat_logprobs(ITEMS, 2)
    assert shaped["refusal"] is None
    first, second = shaped["content"]
    assert first == {"token": "Par", "logprob": -0.5, "bytes": [80, 97, 114], "top_logprobs": [
        {"token": "Par", "logprob": -0.5, "bytes": [80, 97, 114]},
        {"token": "Lon", "logprob": -1.5, "bytes": [76, 111, 110]}]}
    assert second["top_logprobs"] == [{"token": "is", "logprob": -0.1, "bytes": [105, 115]}]
    assert [entry["top_logprobs"] for entry in chat_logprobs(ITEMS, 0)["content"]] == [[], []]


def test_legacy_shape_has_offsets_into_the_text() -> None:
    assert legacy_logprobs(ITEMS, 1, offset=4) == {
        "tokens": ["Par", "is"], "token_logprobs": [-0.5, -0.1],
        "top_logprobs": [{"Par": -0.5}, {"is": -0.1}], "text_offset": [4, 7]}
