"""What ``response_format`` and a forced ``tool_choice`` ask of a generation: the JSON schema
sent to llama.cpp, and the schemas it could not enforce refused with a 400 naming them."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from tunegate.chat.tool_calls import read_reply
from tunegate.errors import InvalidRequest
from tunegate.serving.constraints import (
    JSON_OBJECT,
    check_schema,
    forced_tool_names,
    response_constraint,
    tool_call_constraint,
)

TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "now"}}]


class Person(BaseModel):
    name: str = Field(max_length=20)
    age: int = Field(ge=0, le=150)
    pets: list[Pet]


class Pet(BaseModel):
    kind: str
    legs: int


Person.model_rebuild()


def refused(schema: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        response_constraint({"type": "json_schema",
                             "json_schema": {"name": "x", "schema": schema, "strict": True}})
    assert caught.value.param == "response_format.json_schema.schema"
    return caught.value


def test_text_is_free_and_json_object_is_any_object() -> None:
    assert response_constraint(None) is None
    assert response_constraint({"type": "text"}) is None
    constraint = response_constraint({"type": "json_object"})
    assert constraint is not None and constraint.json_schema == JSON_OBJECT
    assert constraint.prefix == ""


def test_a_pydantic_models_strict_schema_is_sent_as_is() -> None:
    schema = Person.model_json_schema()  # $defs, $ref, integer bounds, maxLength, title
    constraint = response_constraint({"type": "json_schema",
                                      "json_schema": {"name": "Person", "schema": schema}})
    assert constraint is not None and constraint.json_schema == schema


@pytest.mark.parametrize(("schema", "named"), [
    ({"not": {"type": "string"}}, "'not'"),
    ({"type": "number", "multipleOf": 3}, "'multipleOf'"),
    ({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}},
     "/properties/a"),
    ({"type": "number", "minimum": 0}, "'minimum'"),
    ({"type": "string", "pattern": "abc"}, "anchored"),
    ({"type": "string", "format": "email"}, "'email'"),
    ({"$ref": "https://example.com/schema.json"}, "'$ref'"),
    ({"anyOf": [{"type": "string"}, {"if": {}}]}, "/anyOf/1"),
])
def test_a_keyword_llama_cpp_cannot_enforce_is_refused_by_name(schema: Any, named: str) -> None:
    error = refused(schema)
    assert named in error.message and error.code == "unsupported_schema"


def test_enforced_keywords_pass() -> None:
    check_schema({"type": "object", "properties": {
        "when": {"type": "string", "format": "date"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
        "required": ["when"], "additionalProperties": False}, "p")


def test_a_named_tool_must_be_offered() -> None:
    with pytest.raises(InvalidRequest) as caught:
        forced_tool_names({"type": "function", "function": {"name": "fly"}}, TOOLS)
    assert caught.value.param == "tool_choice" and "'fly'" in caught.value.message
    with pytest.raises(InvalidRequest):
        forced_tool_names("required", [])
    assert forced_tool_names("required", TOOLS) == ["get_weather", "now"]
    assert forced_tool_names({"name": "now"}, TOOLS) == ["now"]  # the older function_call


def test_a_forced_call_is_a_tool_call_block_with_valid_arguments() -> None:
    constraint = tool_call_constraint(["get_weather"], TOOLS)
    answer = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    jsonschema.validate(json.loads(answer), constraint.json_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "now", "arguments": {}}, constraint.json_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "get_weather", "arguments": {"town": "Paris"}},
                            constraint.json_schema)
    # What the model generates after the given prefix reads back as one call.
    reply = read_reply(constraint.prefix + answer, {"get_weather"})
    assert [call["function"]["name"] for call in reply.tool_calls] == ["get_weather"]


def test_required_lets_the_model_pick_any_offered_function() -> None:
    constraint = tool_call_constraint(["get_weather", "now"], TOOLS)
    jsonschema.validate({"name": "now", "arguments": {}}, constraint.json_schema)


def test_tool_parameters_are_checked_and_named() -> None:
    tools = [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "not": {"required": ["a"]}}}}]
    with pytest.raises(InvalidRequest) as caught:
        tool_call_constraint(["f"], tools)
    assert caught.value.param == "tools.0.function.parameters"


def test_parameters_defs_are_reachable_from_the_root() -> None:
    parameters = Person.model_json_schema()
    constraint = tool_call_constraint(["add"], [{"type": "function", "function": {
        "name": "add", "parameters": parameters}}])
    call = {"name": "add", "arguments": {"name": "Ann", "age": 3,
                                        "pets": [{"kind": "cat", "legs": 4}]}}
    jsonschema.validate(call, constraint.json_schema)
    call["arguments"]["pets"] = [{"kind": "cat"}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(call, constraint.json_schema)
