"""/v1/responses refuses what it cannot answer before any model runs: the 400s name the
Responses parameter at fault (not the chat parameter it became), each in OpenAI's envelope,
and the server keeps serving; a stored response is never found (404). The answers themselves
are tested with the model in tests/inference/test_responses.py and test_responses_sdk.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import expect_error
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

RESPONSES = "/v1/responses"
ASK = {"model": EMBEDDED_MODEL_ID, "input": "Hi"}


@pytest.mark.parametrize(("extra", "param", "code"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id", "unsupported_parameter"),
    ({"conversation": {"id": "conv_1"}}, "conversation", "unsupported_parameter"),
    ({"background": True}, "background", "unsupported_parameter"),
    ({"tools": [{"type": "web_search"}]}, "tools.0.type", "unsupported_tool"),
    ({"tools": [{"type": "function"}]}, "tools.0", "invalid_tool"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type",
     "unsupported_parameter"),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input.0.content.0.type", "unsupported_content"),
    ({"text": {"format": {"type": "json_schema", "name": "n",
                          "schema": {"type": "number", "multipleOf": 2}}}},
     "text.format.schema", "unsupported_schema"),
    ({"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
     "text.format", "invalid_value"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function",
                                                                    "name": "g"}},
     "tool_choice", "invalid_value"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "number", "not": {}}}}}],
      "tool_choice": "required"}, "tools.0.parameters", "unsupported_schema"),
    ({"top_logprobs": 3}, "top_logprobs", "unsupported_parameter"),
])
def test_a_refusal_names_the_responses_parameter(client: Any, extra: dict[str, Any], param: str,
                                                 code: str) -> None:
    expect_error(client, client.post(RESPONSES, json={**ASK, **extra}), 400, param=param,
                 code=code)


def test_the_contract_refuses_what_it_does_not_declare(client: Any) -> None:
    error = expect_error(client, client.post(RESPONSES, json={**ASK, "max_tokens": 4}), 400,
                         param="max_tokens", code="unknown_parameter")
    assert "max_output_tokens" in error["message"]  # where it belongs
    expect_error(client, client.post(RESPONSES, json={"model": EMBEDDED_MODEL_ID}), 400)
    expect_error(client, client.post(RESPONSES, json={**ASK, "input": [{"role": "tool"}]}), 400,
                 param="input")  # anyOf: the contract names the whole input


def test_parameters_the_agents_sdk_and_langchain_send_are_accepted(client: Any) -> None:
    """The unknown model's 404 shows the body passed the contract and the translation."""
    sent = {"store": True, "include": ["reasoning.encrypted_content"], "truncation": "auto",
            "reasoning": {"effort": None}, "user": "u", "metadata": {"a": "b"},
            "service_tier": "auto", "prompt_cache_key": "k", "safety_identifier": "s",
            "stream_options": {"include_obfuscation": False}, "max_tool_calls": 3,
            "parallel_tool_calls": False, "previous_response_id": None,
            "text": {"format": {"type": "text"}, "verbosity": "low"}}
    expect_error(client, client.post(RESPONSES, json={**ASK, **sent, "model": "no-such-model"}),
                 404, code="model_not_found")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_no_response_is_ever_stored(client: Any, method: str) -> None:
    error = expect_error(client, client.request(method, f"{RESPONSES}/resp_123"), 404,
                         param="response_id", code="response_not_found")
    assert "does not store responses" in error["message"]
