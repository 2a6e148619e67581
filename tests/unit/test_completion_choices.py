"""Shaping ``n`` choices, log probabilities and forced tool calls into OpenAI's objects, with
``ScriptedModel`` (a test fake, named so) in place of llama.cpp: it records what it was asked
and answers a fixed text per choice, so these run without a model process."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tunegate.errors import InvalidRequest
from tunegate.serving import completions
from tunegate.serving.engine import Delta, Sampling
from tunegate.serving.pool import ModelFiles

FILES = ModelFiles("m", Path("m.gguf"))
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}]


def probability(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.5, "bytes": list(token.encode()),
            "top_logprobs": [{"token": token, "logprob": -0.5, "bytes": list(token.encode())},
                             {"token": "?", "logprob": -2.0, "bytes": [63]}]}


class ScriptedModel:
    """Test fake: a served model whose answer to seed ``s`` is ``answers[s % len(answers)]``,
    one token per character."""

    n_ctx = 2048
    n_vocab = 100

    def __init__(self, answers: Sequence[str]):
        self.answers = answers
        self.samplings: list[Sampling] = []
        self.prefixes: list[str] = []
        self.stops: list[Sequence[str]] = []

    def chat_prompt(self, messages: Any, tools: Any = None, prefix: str = "") -> list[int]:
        self.prefixes.append(prefix)
        return [1, 2, 3]

    def text_prompt(self, prompt: str) -> list[int]:
        return [1, 2]

    def generate(self, prompt: Sequence[int], sampling: Sampling, max_tokens: int,
                 stop: Sequence[str] = ()) -> Iterator[Delta]:
        self.samplings.append(sampling)
        self.stops.append(stop)
        answer = self.answers[(sampling.seed or 0) % len(self.answers)]
        for index, token in enumerate(answer):
            probabilities = (probability(token),) if sampling.n_probs else ()
            yield Delta(token, index + 1, probabilities=probabilities)
        yield Delta("", len(answer), "stop")


class ScriptedPool:
    """Test fake: a pool that lends the one scripted model."""

    def __init__(self, model: ScriptedModel):
        self.model = model

    @contextmanager
    def use(self, files: ModelFiles) -> Iterator[ScriptedModel]:
        yield self.model


def run(model: ScriptedModel, body: dict[str, Any]) -> Any:
    request = (completions.chat_request({"model": "m", **body}) if "messages" in body
               else completions.completion_request({"model": "m", **body}))
    return completions.run(ScriptedPool(model), FILES, request)  # type: ignore[arg-type]


ASK = [{"role": "user", "content": "hi"}]


def test_n_choices_each_with_its_own_seed() -> None:
    model = ScriptedModel(["ab", "cde", "f"])
    answer = run(model, {"messages": ASK, "n": 3, "seed": 0})
    assert [(c["index"], c["message"]["content"]) for c in answer["choices"]] == [
        (0, "ab"), (1, "cde"), (2, "f")]
    assert sorted(s.seed for s in model.samplings) == [0, 1, 2]
    assert answer["usage"]["completion_tokens"] == 6 and answer["usage"]["prompt_tokens"] == 3


def test_streamed_n_choices_each_end_with_a_finish_reason() -> None:
    chunks = list(run(ScriptedModel(["ab", "cd"]), {"messages": ASK, "n": 2, "seed": 0,
                                                    "stream": True}))
    texts: dict[int, str] = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    assert texts == {0: "ab", 1: "cd"}
    finishes = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert sorted(finishes) == [0, 1]


def test_chat_logprobs_cover_every_token() -> None:
    model = ScriptedModel(["Paris"])
    answer = run(model, {"messages": ASK, "logprobs": True, "top_logprobs": 1})
    content = answer["choices"][0]["logprobs"]["content"]
    assert "".join(entry["token"] for entry in content) == "Paris"
    assert all(len(entry["top_logprobs"]) == 1 for entry in content)
    assert model.samplings[0].n_probs == 1
    assert run(ScriptedModel(["x"]), {"messages": ASK})["choices"][0]["logprobs"] is None


def test_streamed_chunks_carry_their_tokens_logprobs() -> None:
    chunks = list(run(ScriptedModel(["ab"]), {"messages": ASK, "logprobs": True,
                                              "stream": True}))
    tokens = [entry["token"] for chunk in chunks for choice in chunk["choices"]
              if choice["logprobs"] for entry in choice["logprobs"]["content"]]
    assert tokens == ["a", "b"]


def test_legacy_logprobs_on_text_completions() -> None:
    model = ScriptedModel([" Paris"])
    answer = run(model, {"prompt": "The capital is", "logprobs": 0})
    logprobs = answer["choices"][0]["logprobs"]
    assert "".join(logprobs["tokens"]) == " Paris"
    assert logprobs["text_offset"] == [0, 1, 2, 3, 4, 5]
    assert logprobs["top_logprobs"] == [{}] * 6
    assert model.samplings[0].n_probs == 1  # a token's own log probability needs one


def _forced_call(model: ScriptedModel, **body: Any) -> tuple[list[dict[str, Any]], str]:
    """A ``tool_choice: "required"`` request's tool calls and finish reason, streamed (whose
    chunks must carry no text) or not."""
    result = run(model, {"messages": ASK, "tools": TOOLS, "tool_choice": "required", **body})
    if not body.get("stream"):
        return result["choices"][0]["message"]["tool_calls"], result["choices"][0]["finish_reason"]
    chunks = list(result)
    assert not any(c["choices"][0]["delta"].get("content") for c in chunks)
    return _joined_calls(chunks), chunks[-1]["choices"][0]["finish_reason"]


def test_a_forced_call_starts_the_answer_and_is_read_as_a_call() -> None:
    model = ScriptedModel(['{"name": "f", "arguments": {"x": 1}}'])
    for stream in (False, True):
        calls, finish = _forced_call(model, stream=stream)
        assert finish == "tool_calls"
        assert [json.loads(call["function"]["arguments"]) for call in calls] == [{"x": 1}]
    assert model.prefixes == ["<tool_call>\n"] * 2
    assert model.samplings[0].json_schema is not None


def test_a_forced_call_with_the_closing_tag_in_a_value_is_still_a_call() -> None:
    """The forced call's grammar allows one call: no ``</tool_call>`` stop, which llama.cpp
    would match inside the value and cut the call into text (seen as finish_reason "stop")."""
    answer = {"x": 1, "note": "</tool_call>"}
    model = ScriptedModel([json.dumps({"name": "f", "arguments": answer})])
    for parallel in (True, False):
        for stream in (False, True):
            calls, finish = _forced_call(model, parallel_tool_calls=parallel, stream=stream)
            assert finish == "tool_calls", (parallel, stream)
            assert [json.loads(call["function"]["arguments"]) for call in calls] == [answer]
    assert not any("</tool_call>" in stop for stop in model.stops)


def test_a_forced_call_that_reads_as_no_call_is_logged_with_its_text(
        caplog: pytest.LogCaptureFixture) -> None:
    broken = '{"name": "f", "arguments": {"x": 1}} trailing'  # no grammar here: a fake answer
    for stream in (False, True):
        caplog.clear()
        result = run(ScriptedModel([broken]), {"messages": ASK, "tools": TOOLS,
                                               "tool_choice": "required", "stream": stream})
        if stream:
            list(result)  # a stream is generated as it is read
        [record] = [r for r in caplog.records if r.name == "tunegate.serving"]
        assert record.levelname == "WARNING" and repr("<tool_call>\n" + broken) in record.message
    caplog.clear()
    run(ScriptedModel([broken]), {"messages": ASK, "tools": TOOLS})  # not forced: not logged
    assert not caplog.records


def test_a_json_schema_is_sent_to_the_model() -> None:
    model = ScriptedModel(['{"a": 1}'])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    run(model, {"messages": ASK, "response_format": {
        "type": "json_schema", "json_schema": {"name": "s", "schema": schema}}})
    assert model.samplings[0].json_schema == schema and model.prefixes == [""]


TWO_CALLS = ('<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>\n'
             '<tool_call>\n{"name": "f", "arguments": {"x": 2}}\n</tool_call>')


def _streamed_calls(chunks: list[Any]) -> list[dict[str, Any]]:
    return [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls") or []]


def _joined_calls(chunks: list[Any]) -> list[dict[str, Any]]:
    """The streamed calls joined by ``index`` (arguments concatenated), as clients do."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in _streamed_calls(chunks):
        call = calls.setdefault(delta["index"], {"function": {"arguments": ""}})
        call.update({key: delta[key] for key in ("id", "type") if key in delta})
        function = delta.get("function") or {}
        call["function"].update({k: v for k, v in function.items() if k == "name"})
        call["function"]["arguments"] += function.get("arguments") or ""
    return [calls[index] for index in sorted(calls)]


def test_parallel_tool_calls_returns_every_call_or_only_the_first() -> None:
    for parallel, expected in ((None, [{"x": 1}, {"x": 2}]), (True, [{"x": 1}, {"x": 2}]),
                               (False, [{"x": 1}])):
        body: dict[str, Any] = {"messages": ASK, "tools": TOOLS}
        if parallel is not None:
            body["parallel_tool_calls"] = parallel
        model = ScriptedModel([TWO_CALLS])
        choice = run(model, body)["choices"][0]
        calls = choice["message"]["tool_calls"]
        assert [json.loads(call["function"]["arguments"]) for call in calls] == expected
        assert choice["finish_reason"] == "tool_calls"
        streamed = _streamed_calls(list(run(model, {**body, "stream": True})))
        assert [call["index"] for call in streamed if "id" in call] == list(range(len(expected)))
        # Without parallel calls, generation stops where the first call ends.
        assert all(("</tool_call>" in stop) is (parallel is False) for stop in model.stops)


def test_streamed_tool_calls_come_in_openais_delta_shape() -> None:
    chunks = list(run(ScriptedModel([TWO_CALLS]), {"messages": ASK, "tools": TOOLS,
                                                   "stream": True}))
    deltas = _streamed_calls(chunks)
    assert len(deltas) == 4
    for index in (0, 1):
        first, rest = deltas[2 * index], deltas[2 * index + 1]
        assert set(first) == {"index", "id", "type", "function"} and first["index"] == index
        assert first["type"] == "function" and first["id"].startswith("call_")
        assert first["function"] == {"name": "f", "arguments": ""}
        assert rest == {"index": index, "function": {"arguments": json.dumps({"x": index + 1})}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_the_sdks_stream_state_joins_the_deltas_into_tool_calls() -> None:
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state = ChatCompletionStreamState(input_tools=TOOLS)  # type: ignore[arg-type]
    events = []
    for chunk in run(ScriptedModel([TWO_CALLS]), {"messages": ASK, "tools": TOOLS,
                                                  "stream": True}):
        events += state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    message = state.get_final_completion().choices[0].message
    assert message.tool_calls is not None
    assert [(call.id.startswith("call_"), call.type, call.function.name,
             json.loads(call.function.arguments)) for call in message.tool_calls] == [
        (True, "function", "f", {"x": 1}), (True, "function", "f", {"x": 2})]
    done = [event for event in events if event.type == "tool_calls.function.arguments.done"]
    assert [(event.index, event.name) for event in done] == [(0, "f"), (1, "f")]


def test_logit_bias_is_sent_to_the_model_as_token_bias_pairs() -> None:
    model = ScriptedModel(["x"])
    run(model, {"messages": ASK, "logit_bias": {"5": -100, "7": 50.5}})
    run(model, {"prompt": "p", "logit_bias": {"99": 100}})
    assert [s.to_llama()["logit_bias"] for s in model.samplings] == [
        [[5, -100.0], [7, 50.5]], [[99, 100.0]]]
    run(model, {"messages": ASK, "logit_bias": {}})
    assert "logit_bias" not in model.samplings[-1].to_llama()


def test_a_logit_bias_outside_the_vocabulary_or_range_is_refused() -> None:
    for bias in ({"100": 1}, {"abc": 1}, {"-1": 1}, {"1.5": 1}, {"1": 101}, {"1": -100.5},
                 {"1": "x"}, {"1": True}, [[1, 2]]):
        with pytest.raises(InvalidRequest) as refused:
            run(ScriptedModel(["x"]), {"messages": ASK, "logit_bias": bias})
        assert refused.value.param == "logit_bias", bias
