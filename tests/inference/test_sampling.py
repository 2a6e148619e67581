"""Sampling parameters change what the model does, on /v1/chat/completions and /v1/completions:
``logit_bias``, ``seed``, ``presence_penalty``, ``frequency_penalty``, ``stop``,
``max_completion_tokens`` / ``max_tokens``, ``stream_options.include_usage`` and the legacy
integer ``logprobs``. Each test compares against the same request without the parameter, so a
parameter accepted and ignored fails it. A real ``tunegate serve``, the real embedded SmolLM2
run by llama.cpp, the official SDK loose and strict (``clients``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.inference.conftest import BASE, FRANCE

PROMPT = "The capital of France is"
# A prompt that a model continues by repeating itself unless told otherwise.
APPLES = "apple apple apple apple apple apple apple apple"
REPEAT = [FRANCE[0], {"role": "user", "content": "Write the word apple ten times."}]


@pytest.fixture(scope="module")
def token_id(base_gguf: Path) -> Any:
    """The embedded model's own token id of a text that is one token (its vocabulary only)."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(base_gguf), vocab_only=True, verbose=False)

    def one(text: str) -> int:
        [token] = vocab.tokenize(text.encode(), add_bos=False, special=False)
        return token

    return one


def _chat(client: OpenAI, **params: Any) -> str:
    body: dict[str, Any] = {"model": BASE, "messages": FRANCE, "temperature": 0,
                            "max_completion_tokens": 12, **params}
    return client.chat.completions.create(**body).choices[0].message.content or ""


def _text(client: OpenAI, **params: Any) -> str:
    body: dict[str, Any] = {"model": BASE, "prompt": PROMPT, "temperature": 0, "max_tokens": 8,
                            **params}
    return client.completions.create(**body).choices[0].text


def test_logit_bias_bans_and_forces_the_models_own_tokens(clients: list[OpenAI],
                                                          token_id: Any) -> None:
    paris, comma = token_id(" Paris"), token_id(",")
    for client in clients:
        assert "Paris" in _chat(client) and _text(client).startswith(" Paris")
        banned = {str(paris): -100}
        assert " Paris" not in _chat(client, logit_bias=banned)
        assert not _text(client, logit_bias=banned).startswith(" Paris")
        forced = {str(comma): 100}  # sampled at temperature 1: still the only choice
        assert _chat(client, logit_bias=forced, temperature=1, max_completion_tokens=5) == ",,,,,"
        assert _text(client, logit_bias=forced, temperature=1, max_tokens=5) == ",,,,,"


@pytest.mark.parametrize("bias", [{"abc": 5}, {"1": 101}, {"1": -100.5}, {"49152": 1}])
def test_a_bad_logit_bias_is_400_naming_it(clients: list[OpenAI], bias: dict[str, Any]) -> None:
    for client in clients:
        for call in (_chat, _text):
            with pytest.raises(openai.BadRequestError) as refused:
                call(client, logit_bias=bias)
            # The schema's bounds name the key too: logit_bias.1
            assert (refused.value.param or "").split(".")[0] == "logit_bias", refused.value.body


def test_the_same_seed_repeats_a_sampled_answer_and_others_differ(
        clients: list[OpenAI]) -> None:
    for client in clients:
        for call in (_chat, _text):
            sampled = {seed: call(client, temperature=1, seed=seed) for seed in (1, 2, 3)}
            assert call(client, temperature=1, seed=2) == sampled[2]
            assert len(set(sampled.values())) > 1, (call.__name__, sampled)


def _distinct_share(tokens: list[str]) -> float:
    return len(set(tokens)) / len(tokens)


@pytest.mark.parametrize("penalty", ["frequency_penalty", "presence_penalty"])
def test_penalties_move_the_odds_of_tokens_already_used(clients: list[OpenAI],
                                                        penalty: str) -> None:
    """Greedy, so only the penalty differs: either sign changes the answer, and on a prompt of
    repeated apples a negative one makes the continuation repeat itself more."""
    client = clients[1]

    def chat_tokens(value: float) -> list[str]:
        choice = client.chat.completions.create(
            model=BASE, messages=REPEAT, temperature=0, max_completion_tokens=30,  # type: ignore[arg-type]
            logprobs=True, **{penalty: value}).choices[0]
        return [entry.token for entry in choice.logprobs.content or []]  # type: ignore[union-attr]

    def text_tokens(value: float) -> list[str]:
        choice = client.completions.create(model=BASE, prompt=APPLES, temperature=0,
                                           max_tokens=24, logprobs=0, **{penalty: value}).choices[0]
        return list(choice.logprobs.tokens or [])  # type: ignore[union-attr]

    for tokens in (chat_tokens, text_tokens):
        plain, repeating, varied = tokens(0.0), tokens(-2.0), tokens(2.0)
        assert repeating != plain and varied != plain, (tokens.__name__, plain)
        if tokens is text_tokens:
            assert _distinct_share(repeating) < _distinct_share(plain), (repeating, plain)


def test_a_stop_string_or_list_cuts_the_chat_answer(clients: list[OpenAI]) -> None:
    for client in clients:
        free = _chat(client, max_completion_tokens=16)
        stop = free[8:14]  # spans tokens, whatever this build's answer is
        for given in (stop, [stop], ["never said", stop]):
            completion = client.chat.completions.create(
                model=BASE, messages=FRANCE, temperature=0,  # type: ignore[arg-type]
                max_completion_tokens=16, stop=given)
            assert completion.choices[0].message.content == free[:free.index(stop)]
            assert completion.choices[0].finish_reason == "stop"
        chunks = list(client.chat.completions.create(
            model=BASE, messages=FRANCE, temperature=0, max_completion_tokens=16,  # type: ignore[arg-type]
            stop=stop, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            free[:free.index(stop)]


def test_the_token_limit_ends_the_answer_with_length(clients: list[OpenAI]) -> None:
    for client in clients:
        chat = client.chat.completions.create(model=BASE, messages=FRANCE, temperature=0,  # type: ignore[arg-type]
                                              max_completion_tokens=3)
        text = client.completions.create(model=BASE, prompt=PROMPT, temperature=0, max_tokens=3)
        for answer in (chat, text):
            assert answer.usage is not None and answer.usage.completion_tokens == 3
            assert answer.choices[0].finish_reason == "length"
        assert len(chat.choices[0].message.content or "") < len(_chat(client))


def test_include_usage_adds_a_last_chunk_with_the_usage_on_both_endpoints(
        clients: list[OpenAI]) -> None:
    for client in clients:
        for include in (False, True):
            options = {"stream_options": {"include_usage": True}} if include else {}
            chat = list(client.chat.completions.create(
                model=BASE, messages=FRANCE, temperature=0, max_completion_tokens=4,  # type: ignore[arg-type]
                stream=True, **options))
            # The strict SDK cannot read any legacy stream (its Completion type has no null
            # finish_reason, which every chunk but the last carries, at OpenAI's too).
            text = [] if client is clients[1] else list(client.completions.create(
                model=BASE, prompt=PROMPT, temperature=0, max_tokens=4, stream=True, **options))
            for chunks in (chat, text) if text else (chat,):
                with_usage = [chunk for chunk in chunks if chunk.usage is not None]
                if not include:
                    assert with_usage == []
                    continue
                assert with_usage == [chunks[-1]] and chunks[-1].choices == []
                usage = chunks[-1].usage
                assert usage is not None and usage.completion_tokens == 4
                assert usage.total_tokens == usage.prompt_tokens + 4


def test_legacy_logprobs_give_each_token_and_its_alternatives(clients: list[OpenAI]) -> None:
    for client in clients:
        assert client.completions.create(model=BASE, prompt=PROMPT, temperature=0,
                                         max_tokens=4).choices[0].logprobs is None
        choice = client.completions.create(model=BASE, prompt=PROMPT, temperature=0,
                                           max_tokens=4, logprobs=2).choices[0]
        logprobs = choice.logprobs
        assert logprobs is not None and "".join(logprobs.tokens or []) == choice.text
        assert len(logprobs.token_logprobs or []) == 4
        assert all(len(top) == 2 for top in logprobs.top_logprobs or [])
        assert logprobs.text_offset == [sum(len(t) for t in (logprobs.tokens or [])[:i])
                                        for i in range(4)]
