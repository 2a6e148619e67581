"""/v1/responses on the in-process app (its JSON answers validated against openapi.yaml), with
the official SDK as the client, loose and strict: the real embedded model for text, JSON schema
and forced calls, ``ScriptedAnswer`` (tests/inference/test_tools.py's fake) for a call the model
makes on its own, which SmolLM2-135M does not. The same through a real server process:
test_responses_sdk.py; the refusals: tests/api/test_responses.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from openai import OpenAI

from tests.inference.conftest import BASE
from tests.inference.test_tools import scripted  # noqa: F401 (a fixture)

SYSTEM = "You are a helpful assistant."
TOOL = {"type": "function", "name": "takeoff_drone", "description": "Start the drone and climb.",
        "parameters": {"type": "object", "properties": {"altitude": {"type": "integer"}},
                       "required": ["altitude"], "additionalProperties": False}}
ASK = "Take off to 100 metres."


class City(pydantic.BaseModel):
    name: str
    country: str


@pytest.fixture(params=[False, True], ids=["loose", "strict"])
def sdk(client: Any, request: pytest.FixtureRequest) -> Iterator[OpenAI]:
    made = OpenAI(base_url="http://testserver/v1", api_key="local", http_client=client,
                  max_retries=0, _strict_response_validation=request.param)
    yield made


def test_a_text_response_plain_and_streamed(sdk: OpenAI) -> None:
    response = sdk.responses.create(model=BASE, instructions=SYSTEM, temperature=0,
                                    input="What is the capital of France?",
                                    max_output_tokens=12)
    assert response.status in ("completed", "incomplete")
    assert "Paris" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0
    with sdk.responses.stream(model=BASE, instructions=SYSTEM, temperature=0,
                              input="What is the capital of France?",
                              max_output_tokens=12) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == response.output_text


def test_parse_with_a_pydantic_format(sdk: OpenAI) -> None:
    parsed = sdk.responses.parse(model=BASE, instructions=SYSTEM, temperature=0,
                                 input="Name a city and its country.", text_format=City)
    assert isinstance(parsed.output_parsed, City)


def test_a_forced_function_call_plain_and_streamed(sdk: OpenAI) -> None:
    response = sdk.responses.create(model=BASE, input=ASK, tools=[TOOL],  # type: ignore[list-item]
                                    tool_choice={"type": "function", "name": "takeoff_drone"})
    [call] = response.output
    assert call.type == "function_call" and call.name == "takeoff_drone"
    assert isinstance(json.loads(call.arguments)["altitude"], int)
    events = list(sdk.responses.create(model=BASE, input=ASK, tools=[TOOL],  # type: ignore[list-item]
                                       tool_choice="required", stream=True))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and isinstance(json.loads(done[0].arguments)["altitude"], int)
    assert events[-1].type == "response.completed"


def test_a_call_the_model_makes_and_its_result_on_the_next_turn(sdk: OpenAI, scripted) -> None:  # noqa: F811
    first = sdk.responses.create(model=BASE, input=ASK, tools=[TOOL])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"altitude": 100}
    second = sdk.responses.create(model=BASE, tools=[TOOL], input=[  # type: ignore[list-item]
        {"role": "user", "content": ASK}, *[item.model_dump() for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "airborne"}])
    assert second.status == "completed"
    prompt = scripted[-1].detokenize(scripted[-1].prompts[-1])
    assert "airborne" in prompt and "takeoff_drone" in prompt
