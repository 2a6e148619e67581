"""Tool calling through /v1/chat/completions: prompts rendered as training renders them, and
answers made of ``<tool_call>`` blocks returned as OpenAI ``tool_calls``.

The rendering tests run the real embedded GGUF's template. The answer-shaping tests need a model
that calls a tool on cue, which SmolLM2-135M does not: ``ScriptedAnswer`` (a test fake, named
so) keeps the real model's prompt rendering and replaces only its generation with a fixed text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openai import OpenAI

from tests.inference.conftest import BASE
from tunegate.chat.format import to_template_messages
from tunegate.serving.engine import Delta, EngineConfig
from tunegate.serving.model import ModelLoader, ServedModel
from tunegate.serving.pool import ModelFiles

CHAT = "/v1/chat/completions"
TOOLS = [{"type": "function", "function": {
    "name": "takeoff_drone", "description": "Start the drone and climb.",
    "parameters": {"type": "object", "properties": {"altitude": {"type": "integer"}}}}}]
ASK = [{"role": "user", "content": "Take off to 100 metres."}]
CALL_TEXT = '<tool_call>\n{"name": "takeoff_drone", "arguments": {"altitude": 100}}\n</tool_call>'


class ScriptedAnswer:
    """Test fake: the real model's prompts, a fixed answer instead of generation."""

    def __init__(self, real: ServedModel, answer: str):
        self.real = real
        self.answer = answer
        self.prompts: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def generate(self, prompt: Sequence[int], *_: Any, **__: Any) -> Iterator[Delta]:
        self.prompts.append(list(prompt))
        for start in range(0, len(self.answer), 4):  # in pieces, as a model streams
            yield Delta(self.answer[start:start + 4], start // 4 + 1)
        yield Delta("", len(self.answer) // 4 + 1, "stop")


@pytest.fixture
def scripted(app) -> list[ScriptedAnswer]:
    """Make every model of the in-process app answer ``CALL_TEXT``; the list collects them."""
    made: list[ScriptedAnswer] = []
    real = app.state_service.inference._loader

    def loader(files: Any) -> ScriptedAnswer:
        made.append(ScriptedAnswer(real(files), CALL_TEXT))
        return made[-1]

    app.state_service.inference._loader = loader
    return made


def test_serving_renders_tools_exactly_as_training_does(base_gguf: Path) -> None:
    from transformers import AutoTokenizer

    from tunegate.training.data import render_chat, template_support

    tokenizer = AutoTokenizer.from_pretrained(base_gguf.parent, gguf_file=base_gguf.name)
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "takeoff_drone", "arguments": '{"altitude": 100}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "airborne"}]
    prepared = to_template_messages({"messages": history, "tools": TOOLS},
                                    template_support(tokenizer))
    trained = render_chat(tokenizer, prepared.messages, prepared.tools, generation_prompt=True)
    model = ModelLoader(EngineConfig(parallel=1), None)(ModelFiles(BASE, base_gguf, None))
    try:
        served = model.detokenize(model.chat_prompt(history, TOOLS))
    finally:
        model.close()
    assert "<tools>" in trained and '"takeoff_drone"' in trained
    assert served == trained


def test_a_tool_call_answer_comes_back_as_tool_calls(client, scripted) -> None:
    body = {"model": BASE, "messages": ASK, "tools": TOOLS, "temperature": 0}
    response = client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "takeoff_drone"
    assert json.loads(call["function"]["arguments"]) == {"altitude": 100}
    # The prompt the model saw lists the tool.
    prompt = scripted[0].detokenize(scripted[0].prompts[0])
    assert "<tools>" in prompt and "takeoff_drone" in prompt


def test_without_tools_the_same_answer_is_text(client, scripted) -> None:
    for extra in ({}, {"tools": TOOLS, "tool_choice": "none"}):
        body = {"model": BASE, "messages": ASK, "temperature": 0, **extra}
        choice = client.post(CHAT, json=body).json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        assert choice["message"] == {"role": "assistant", "content": CALL_TEXT,
                                     "refusal": None, "tool_calls": None}
    prompt = scripted[0].detokenize(scripted[0].prompts[-1])
    assert "<tools>" not in prompt  # tool_choice "none" hides them


def test_the_openai_sdk_reads_tool_calls_plain_and_streamed(client, scripted) -> None:
    for strict in (False, True):
        sdk = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=client,
                     max_retries=0, _strict_response_validation=strict)
        completion = sdk.chat.completions.create(model=BASE, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
        call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "takeoff_drone"
        assert completion.choices[0].finish_reason == "tool_calls"
        # The SDK's stream helper joins OpenAI's deltas (a first one with the id, type, name
        # and empty arguments, then the arguments) into the same call.
        with sdk.chat.completions.stream(model=BASE, messages=ASK, tools=TOOLS) as stream:  # type: ignore[arg-type]
            events = list(stream)
            joined = stream.get_final_completion().choices[0]
        [call] = joined.message.tool_calls or []
        assert (call.type, call.function.name) == ("function", "takeoff_drone")
        assert call.id.startswith("call_") and joined.finish_reason == "tool_calls"
        assert json.loads(call.function.arguments) == {"altitude": 100}
        deltas = [t for e in events if e.type == "chunk" and e.chunk.choices
                  for t in e.chunk.choices[0].delta.tool_calls or []]
        assert [(t.index, t.id is not None, t.function.name, t.function.arguments)
                for t in deltas] == [(0, True, "takeoff_drone", ""),
                                     (0, False, None, call.function.arguments)]


def test_a_forced_call_is_made_with_arguments_valid_for_its_function(client) -> None:
    """SmolLM2-135M does not call tools on its own (see ``ScriptedAnswer``); forced, it must,
    with the named function (or one of the offered ones for ``required``), streamed or not."""
    tools = [*TOOLS, {"type": "function", "function": {
        "name": "land_drone", "parameters": {"type": "object", "properties": {
            "speed": {"type": "string", "enum": ["slow", "fast"]}},
            "required": ["speed"], "additionalProperties": False}}}]
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}
    named = {"type": "function", "function": {"name": "land_drone"}}
    for choice, names in (("required", set(schemas)), (named, {"land_drone"})):
        for stream in (False, True):
            body = {"model": BASE, "messages": ASK, "tools": tools, "tool_choice": choice,
                    "temperature": 0, "max_tokens": 40, "stream": stream}
            response = client.post(CHAT, json=body)
            assert response.status_code == 200, response.text
            finish, calls = _calls(response, stream)
            assert finish == "tool_calls", (choice, stream, response.text)
            [call] = calls
            assert call["function"]["name"] in names
            jsonschema.validate(json.loads(call["function"]["arguments"]),
                                schemas[call["function"]["name"]])


def _calls(response: Any, stream: bool) -> tuple[str, list[dict[str, Any]]]:
    if not stream:
        choice = response.json()["choices"][0]
        return choice["finish_reason"], choice["message"]["tool_calls"]
    chunks = [json.loads(block[len("data: "):]) for block in response.text.split("\n\n")
              if block.startswith("data: {")]
    choices = [chunk["choices"][0] for chunk in chunks if chunk["choices"]]
    deltas = [call for c in choices for call in c["delta"].get("tool_calls") or []]
    calls = [delta for delta in deltas if "id" in delta]  # the first delta of each call
    for delta in deltas:
        if "id" not in delta:  # the arguments, joined by index
            calls[delta["index"]]["function"]["arguments"] += delta["function"]["arguments"]
    return choices[-1]["finish_reason"], calls


def test_streamed_text_before_a_call_arrives_as_content(app, client) -> None:
    answer = "Taking off.\n" + CALL_TEXT
    real = app.state_service.inference._loader

    def loader(files: Any) -> ScriptedAnswer:
        return ScriptedAnswer(real(files), answer)

    app.state_service.inference._loader = loader
    sdk = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=client,
                 max_retries=0, _strict_response_validation=True)
    chunks = list(sdk.chat.completions.create(model=BASE, messages=ASK, tools=TOOLS,  # type: ignore[arg-type]
                                              stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Taking off.\n"
    assert sum(1 for d in deltas if d.content) > 1  # streamed in pieces, not at the end
    calls = [t for d in deltas for t in (d.tool_calls or [])]
    assert [t.function.name for t in calls] == ["takeoff_drone", None]  # name, then arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    plain = sdk.chat.completions.create(model=BASE, messages=ASK, tools=TOOLS)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == "Taking off."


def test_parallel_tool_calls_false_returns_one_call_plain_and_streamed(app, client) -> None:
    answer = CALL_TEXT + "\n" + CALL_TEXT.replace("100", "200")  # a model calling twice
    real = app.state_service.inference._loader

    def loader(files: Any) -> ScriptedAnswer:
        return ScriptedAnswer(real(files), answer)

    app.state_service.inference._loader = loader
    sdk = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=client,
                 max_retries=0, _strict_response_validation=True)
    for parallel, altitudes in ((True, [100, 200]), (False, [100])):
        plain = sdk.chat.completions.create(model=BASE, messages=ASK, tools=TOOLS,  # type: ignore[arg-type]
                                            parallel_tool_calls=parallel)
        with sdk.chat.completions.stream(model=BASE, messages=ASK, tools=TOOLS,  # type: ignore[arg-type]
                                         parallel_tool_calls=parallel) as stream:
            streamed = stream.get_final_completion()
        for completion in (plain, streamed):
            calls = completion.choices[0].message.tool_calls or []
            assert [json.loads(call.function.arguments)["altitude"] for call in calls] == altitudes
            assert len({call.id for call in calls}) == len(calls)
            assert completion.choices[0].finish_reason == "tool_calls"
