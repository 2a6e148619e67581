"""Answers shaped as OpenAI's are, through the official ``openai`` SDK against a real
``tunegate serve`` on the embedded model: structured outputs (``parse()`` with a Pydantic
model), forced tool calls, ``n`` choices and log probabilities; and the bad inputs of those
refused with a 400 naming the parameter, the server serving on afterwards.

Every call runs with the SDK's loose parsing and with ``_strict_response_validation=True``.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, ConfigDict, Field

from tests.inference.conftest import BASE, FRANCE

pytestmark = pytest.mark.e2e


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population_millions: int = Field(ge=0, le=50)
    coastal: bool
    climate: Literal["cold", "mild", "hot"]


# One prompt per parallel slot of the served model, two through each client. Many prompts
# through parse() are tests/e2e/test_structured_fine_tune_sdk.py's (twenty, on the fine-tune);
# twenty here took 131 s of a CI run on the base model, which rambles to the token limit.
CITIES = ["Paris", "Tokyo", "Cairo", "Lima"]


def test_parse_returns_a_validated_object_for_every_prompt(clients: list[OpenAI]) -> None:
    def parse(index: int) -> City:
        completion = clients[index % 2].chat.completions.parse(
            model=BASE, response_format=City, max_completion_tokens=120, temperature=0,
            messages=[{"role": "user", "content": f"Describe the city {CITIES[index]} as JSON."}])
        choice = completion.choices[0]
        assert choice.finish_reason == "stop"
        assert choice.message.parsed is not None
        return choice.message.parsed

    with ThreadPoolExecutor(max_workers=4) as pool:  # the model's four parallel slots
        parsed = list(pool.map(parse, range(len(CITIES))))
    assert len(parsed) == len(CITIES) and all(isinstance(city, City) for city in parsed)


def test_json_modes_streamed_or_not_give_json_that_validates(clients: list[OpenAI]) -> None:
    schema = {"type": "object", "properties": {
        "answer": {"type": "string", "maxLength": 30},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 10}},
        "required": ["answer", "confidence"], "additionalProperties": False}
    formats: list[Any] = [
        {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                                "strict": True}},
        {"type": "json_object"}]
    for response_format, check in zip(formats, (schema, {"type": "object"}), strict=True):
        for client in clients:
            completion = client.chat.completions.create(
                model=BASE, messages=FRANCE, response_format=response_format,
                max_completion_tokens=80, seed=1)
            jsonschema.validate(json.loads(completion.choices[0].message.content or ""), check)
            stream = client.chat.completions.create(
                model=BASE, messages=FRANCE, response_format=response_format,
                max_completion_tokens=80, seed=1, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            jsonschema.validate(json.loads(text), check)


class TakeOff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    altitude_metres: int = Field(ge=1, le=500)
    mode: Literal["manual", "auto"]


def test_a_forced_tool_call_validates_against_its_function(clients: list[OpenAI]) -> None:
    weather = {"type": "function", "function": {  # strict: parse() wants every tool strict
        "name": "get_weather", "strict": True, "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"], "additionalProperties": False}}}
    for client in clients:
        completion = client.chat.completions.parse(
            model=BASE, max_completion_tokens=60,
            messages=[{"role": "user", "content": "Take off to 100 metres."}],
            tools=[openai.pydantic_function_tool(TakeOff), weather],
            tool_choice={"type": "function", "function": {"name": "TakeOff"}})
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls or []
        assert call.function.name == "TakeOff"
        assert isinstance(call.function.parsed_arguments, TakeOff)  # strict: validated by the SDK
        required = client.chat.completions.create(
            model=BASE, max_completion_tokens=60, tools=[weather], tool_choice="required",
            messages=[{"role": "user", "content": "Is it raining in Oslo?"}])
        [call] = required.choices[0].message.tool_calls or []
        assert call.type == "function" and call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments),
                            weather["function"]["parameters"])  # type: ignore[index]


def test_a_forced_call_streams_in_openais_deltas_and_the_sdk_joins_them(
        clients: list[OpenAI]) -> None:
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"], "additionalProperties": False}}}
    # Sampled with a seed whose answer (here) writes "</tool_call>" inside the city: a forced
    # call must be a call whatever its value holds (at temperature 1, 2 seeds in 60 did so and
    # came back as text, finish_reason "stop"). Elsewhere the seed may sample another answer,
    # which must be a call all the same.
    for client in clients:
        for parallel in (True, False):
            with client.chat.completions.stream(
                    model=BASE, max_completion_tokens=60, tools=[weather],  # type: ignore[list-item]
                    tool_choice="required", parallel_tool_calls=parallel, seed=31, temperature=1,
                    messages=[{"role": "user", "content": "Is it raining in Oslo?"}]) as stream:
                chunks = [event.chunk for event in stream if event.type == "chunk"]
                final = stream.get_final_completion().choices[0]
            assert final.finish_reason == "tool_calls"
            [call] = final.message.tool_calls or []
            assert call.function.name == "get_weather" and call.id.startswith("call_")
            jsonschema.validate(json.loads(call.function.arguments),
                                weather["function"]["parameters"])  # type: ignore[index]
            deltas = [delta for chunk in chunks if chunk.choices
                      for delta in chunk.choices[0].delta.tool_calls or []]
            first, *rest = deltas
            assert (first.index, first.id, first.type, first.function.name,
                    first.function.arguments) == (0, call.id, "function", "get_weather", "")
            assert rest and all(delta.index == 0 and delta.id is None and delta.type is None
                                and delta.function.name is None for delta in rest)
            assert "".join(delta.function.arguments for delta in rest) == call.function.arguments


def test_n_gives_that_many_choices_streamed_or_not(clients: list[OpenAI]) -> None:
    for client in clients:
        completion = client.chat.completions.create(model=BASE, messages=FRANCE, n=3, seed=7,
                                                    max_completion_tokens=8)
        assert [choice.index for choice in completion.choices] == [0, 1, 2]
        assert all(choice.message.content for choice in completion.choices)
        assert completion.usage is not None and completion.usage.completion_tokens >= 3
        stream = client.chat.completions.create(model=BASE, messages=FRANCE, n=2, seed=7,
                                                max_completion_tokens=8, stream=True)
        finished = {c.choices[0].index for c in stream if c.choices and c.choices[0].finish_reason}
        assert finished == {0, 1}
    text = clients[1].completions.create(model=BASE, prompt="Once upon a time", n=2, seed=3,
                                         max_tokens=6)
    assert [choice.index for choice in text.choices] == [0, 1]


def _at_most_one(top: list[float]) -> bool:
    return sum(math.exp(logprob) for logprob in top) <= 1 + 1e-6


def test_logprobs_with_top_logprobs_sum_to_at_most_one(clients: list[OpenAI]) -> None:
    for client in clients:
        completion = client.chat.completions.create(
            model=BASE, messages=FRANCE, temperature=0, max_completion_tokens=8, logprobs=True,
            top_logprobs=5)
        choice = completion.choices[0]
        assert choice.logprobs is not None and choice.logprobs.content
        assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
        for token in choice.logprobs.content:
            assert len(token.top_logprobs) == 5 and _at_most_one(
                [alt.logprob for alt in token.top_logprobs])
            assert token.bytes == list(token.token.encode())
            assert token.logprob <= 0
        stream = client.chat.completions.create(
            model=BASE, messages=FRANCE, temperature=0, max_completion_tokens=8, logprobs=True,
            top_logprobs=2, stream=True)
        streamed = [t for c in stream if c.choices and c.choices[0].logprobs
                    for t in c.choices[0].logprobs.content or []]
        assert [t.token for t in streamed] == [t.token for t in choice.logprobs.content]
    legacy = clients[1].completions.create(model=BASE, prompt="The capital of France is",
                                           temperature=0, max_tokens=6, logprobs=3)
    logprobs = legacy.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.top_logprobs
    assert "".join(logprobs.tokens) == legacy.choices[0].text
    assert all(len(top) <= 3 and _at_most_one(list(top.values()))
               for top in logprobs.top_logprobs)


def test_bad_input_is_400_naming_the_parameter_and_serving_goes_on(
        clients: list[OpenAI]) -> None:
    client = clients[1]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"response_format": {"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {
                "a": {"type": "array", "uniqueItems": True}}}}}},
         "response_format.json_schema.schema"),
        ({"n": 1000}, "n"),
        ({"logprobs": True, "top_logprobs": 50}, "top_logprobs"),
        ({"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "tool_choice"),
    ]
    for params, param in bad:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=BASE, messages=FRANCE, **params)
        assert refused.value.param == param, refused.value.body
        assert refused.value.code
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=BASE, prompt="Hi", logprobs=50)
    assert refused.value.param == "logprobs"
    assert client.chat.completions.create(model=BASE, messages=FRANCE, temperature=0,
                                          max_completion_tokens=4).choices[0].message.content
