"""The Responses API through a real ``tunegate serve`` and the official ``openai`` SDK, loose
and strict (``_strict_response_validation=True``): ``responses.create`` plain and with
``stream=True``, ``responses.stream``, ``responses.parse(text_format=...)``, a function tool
and a JSON-schema format; bad input is a 400 naming the parameter, after which the server
still answers."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest
from openai import OpenAI

from tests.inference.conftest import BASE

pytestmark = pytest.mark.e2e

SYSTEM = "You are a helpful assistant."
FRANCE = "What is the capital of France?"
WEATHER = {"type": "function", "name": "get_weather", "description": "Today's weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"], "additionalProperties": False}}


class Capital(pydantic.BaseModel):
    country: str
    city: str


def test_create_plain_and_streamed(clients: list[OpenAI]) -> None:
    for client in clients:
        response = client.responses.create(model=BASE, instructions=SYSTEM, input=FRANCE,
                                           temperature=0, max_output_tokens=12)
        assert response.id.startswith("resp_") and "Paris" in response.output_text
        assert response.usage is not None
        assert response.usage.total_tokens == (response.usage.input_tokens
                                               + response.usage.output_tokens)
        events = list(client.responses.create(model=BASE, instructions=SYSTEM, input=FRANCE,
                                              temperature=0, max_output_tokens=12, stream=True))
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert events[0].type == "response.created" and events[-1].type in (
            "response.completed", "response.incomplete")
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == events[-1].response.output_text == response.output_text


def test_stream_helper_and_parse_with_a_json_schema(clients: list[OpenAI]) -> None:
    for client in clients:
        with client.responses.stream(model=BASE, instructions=SYSTEM, temperature=0,
                                     input="Which country is Paris the capital of? Answer "
                                           "in JSON.", text_format=Capital) as stream:
            kinds = {event.type for event in stream}
            final = stream.get_final_response()
        assert "response.output_text.done" in kinds
        assert isinstance(final.output_parsed, Capital)
        parsed = client.responses.parse(model=BASE, instructions=SYSTEM, temperature=0,
                                        input="Paris is in which country? Answer in JSON.",
                                        text_format=Capital)
        assert isinstance(parsed.output_parsed, Capital)


def test_a_function_tool_call_and_its_output_on_the_next_turn(clients: list[OpenAI]) -> None:
    ask = "What is the weather in Paris?"
    for client in clients:
        first = client.responses.create(model=BASE, input=ask, tools=[WEATHER],  # type: ignore[list-item]
                                        tool_choice="required", temperature=0)
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather"
        assert isinstance(json.loads(calls[0].arguments)["city"], str)
        streamed = list(client.responses.create(
            model=BASE, input=ask, tools=[WEATHER], temperature=0, stream=True,  # type: ignore[list-item]
            tool_choice={"type": "function", "name": "get_weather"}))
        done = [e for e in streamed if e.type == "response.function_call_arguments.done"]
        assert len(done) == 1 and json.loads(done[0].arguments)["city"]
        follow_up = client.responses.create(model=BASE, tools=[WEATHER], temperature=0,  # type: ignore[list-item]
                                            max_output_tokens=16, input=[
            {"role": "user", "content": ask}, *[item.model_dump() for item in first.output],
            {"type": "function_call_output", "call_id": calls[0].call_id,
             "output": "Sunny, 24 °C"}])
        assert follow_up.status in ("completed", "incomplete")


def test_bad_input_is_a_400_naming_the_parameter_and_the_server_keeps_serving(
        clients: list[OpenAI]) -> None:
    for client in clients:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=BASE, input="Hi", previous_response_id="resp_1")
        assert refused.value.param == "previous_response_id"
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=BASE, input="Hi",
                                    tools=[{"type": "web_search"}])  # type: ignore[list-item]
        assert refused.value.param == "tools.0.type"
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve("resp_1")
        with pytest.raises(openai.NotFoundError):
            client.responses.delete("resp_1")
        answer = client.responses.create(model=BASE, input="Hi", max_output_tokens=2)
        assert answer.status == "incomplete"
