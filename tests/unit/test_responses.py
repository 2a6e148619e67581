"""The Responses API's translation, both ways (tunegate.api.responses, response_objects,
response_stream): a Responses request into the chat request it means, a chat completion (whole
or streamed) back into OpenAI's Responses objects and events, checked against the installed
``openai`` SDK's own types."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tunegate.api.event_stream import response_events
from tunegate.api.response_objects import skeleton, to_response
from tunegate.api.response_stream import events
from tunegate.api.responses import chat_request, not_stored
from tunegate.errors import InvalidRequest, ServerError

MODEL = "SmolLM2-135M-Instruct"
TOOL = {"type": "function", "name": "get_weather", "description": "The weather today.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def strict(payload: dict[str, Any]) -> Response:
    """``payload`` validated as the SDK's ``Response`` (strict, as with
    ``_strict_response_validation``)."""
    return Response.model_validate(payload)


# --------------------------------------------------------------------------- request -> chat

def test_instructions_and_a_string_input_are_a_system_and_a_user_message() -> None:
    request = chat_request({"model": MODEL, "instructions": "Be brief.", "input": "Hi",
                            "max_output_tokens": 8, "temperature": 0, "top_p": 0.5})
    assert request.body == {
        "model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "Hi"}],
        "temperature": 0, "top_p": 0.5, "max_completion_tokens": 8}
    assert request.sources == ["instructions", "input"]


def test_items_become_messages_tool_calls_and_tool_results() -> None:
    """What the Agents SDK sends on a second turn: the user message, the model's output items
    echoed back (an assistant message and two calls), and the calls' outputs."""
    request = chat_request({"model": MODEL, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather",
         "arguments": '{"city": "Paris"}', "id": "fc_1", "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "get_weather",
         "arguments": '{"city": "Lyon"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        {"type": "function_call_output", "call_id": "call_b",
         "output": [{"type": "input_text", "text": "rain"}]},
    ]})
    calls = [{"id": "call_a", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
             {"id": "call_b", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}],
         "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "rain"}]},
    ]
    assert request.sources == ["input.0", "input.1", "input.4", "input.5"]


def test_a_call_with_no_assistant_message_before_it_is_its_own_turn() -> None:
    request = chat_request({"model": MODEL, "input": [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{}"}]})
    assert request.body["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": "{}"}}]}


def test_tools_tool_choice_and_text_format_take_their_chat_forms() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = chat_request({
        "model": MODEL, "input": "Hi", "stream": True, "parallel_tool_calls": False,
        "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "Answer", "schema": schema,
                            "strict": True}}})
    body = request.body
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather today.",
        "parameters": TOOL["parameters"]}}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Answer", "schema": schema, "strict": True}}
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["parallel_tool_calls"] is False
    for kind in ("text", "json_object"):
        assert chat_request({"model": MODEL, "input": "Hi", "text": {"format": {"type": kind}}}
                            ).body["response_format"] == {"type": kind}
    assert chat_request({"model": MODEL, "input": "Hi", "tool_choice": "required"}
                        ).body["tool_choice"] == "required"


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id", "unsupported_parameter"),
    ({"conversation": "conv_1"}, "conversation", "unsupported_parameter"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
    ({"background": True}, "background", "unsupported_parameter"),
    ({"top_logprobs": 2}, "top_logprobs", "unsupported_parameter"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
    ({"tools": [TOOL, {"type": "web_search"}]}, "tools.1.type", "unsupported_tool"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice", "invalid_value"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type",
     "unsupported_parameter"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input.0.type", "unsupported_input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input.0.content.0.type", "unsupported_content"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input.0.call_id", "missing_required_parameter"),
    ({"input": [{"type": "function_call_output", "call_id": "call_a"}]}, "input.0.output",
     "missing_required_parameter"),
    ({"input": [{"content": "no role"}]}, "input.0.role", "missing_required_parameter"),
])
def test_what_needs_server_state_or_is_not_text_is_refused_naming_it(
        body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        chat_request({"model": MODEL, "input": "Hi", **body})
    assert (refused.value.param, refused.value.code) == (param, code)


def test_state_parameters_set_to_nothing_are_accepted() -> None:
    chat_request({"model": MODEL, "input": "Hi", "previous_response_id": None,
                  "background": False, "store": True, "top_logprobs": 0})


@pytest.mark.parametrize(("chat_param", "responses_param"), [
    ("messages.0.content", "instructions.content"),
    ("messages.3.content", "input.3.content"),
    ("messages.1.content", "input.0.content"),
    ("messages", "input"),
    ("response_format.json_schema.schema", "text.format.schema"),
    ("response_format.type", "text.format"),
    ("max_completion_tokens", "max_output_tokens"),
    ("tools.0.function.parameters", "tools.0.parameters"),
    ("tool_choice", "tool_choice"),
    ("model", "model"),
    (None, None),
])
def test_a_chat_refusal_names_the_responses_parameter(chat_param: str | None,
                                                      responses_param: str | None) -> None:
    request = chat_request({"model": MODEL, "instructions": "Be brief.", "input": [
        {"role": "user", "content": "a"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "d", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "x"}]})
    assert request.rename(chat_param) == responses_param


# --------------------------------------------------------------------------- chat -> response

def completion(content: str | None, calls: list[dict[str, Any]] | None = None,
               finish_reason: str = "stop") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None,
                                     "tool_calls": calls}}],
            "usage": USAGE}


CALL = {"id": "call_x", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_a_text_answer_is_one_message_with_usage() -> None:
    body = {"model": MODEL, "input": "Hi", "instructions": "Be brief.",
            "metadata": {"run": "7"}, "temperature": 0, "max_output_tokens": 16}
    payload = to_response(body, completion("Paris."))
    response = strict(payload)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.incomplete_details is None
    assert response.output_text == "Paris."
    [message] = response.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert (response.instructions, response.metadata, response.temperature,
            response.max_output_tokens, response.model) == ("Be brief.", {"run": "7"}, 0, 16,
                                                            MODEL)
    assert payload["store"] is False and payload["top_p"] == 1.0
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.total_tokens) == (20, 5, 25)
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_tool_calls_are_function_call_items_after_the_text() -> None:
    response = strict(to_response({"model": MODEL, "input": "Hi", "tools": [TOOL]},
                                  completion("Let me look.", [CALL], "tool_calls")))
    message, call = response.output
    assert message.type == "message" and response.output_text == "Let me look."
    assert call.type == "function_call" and call.id is not None and call.id.startswith("fc_")
    assert (call.call_id, call.name, call.arguments) == ("call_x", "get_weather",
                                                        '{"city": "Paris"}')
    only_calls = strict(to_response({"model": MODEL, "input": "Hi"},
                                    completion(None, [CALL], "tool_calls")))
    assert [item.type for item in only_calls.output] == ["function_call"]


def test_a_cut_answer_is_incomplete_for_max_output_tokens() -> None:
    response = strict(to_response({"model": MODEL, "input": "Hi"},
                                  completion("The capital", finish_reason="length")))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]


def test_an_empty_answer_is_still_one_empty_message() -> None:
    response = strict(to_response({"model": MODEL, "input": "Hi"}, completion("")))
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == ""


# --------------------------------------------------------------------------- streamed

def chunk(content: str | None = None, *, calls: list[dict[str, Any]] | None = None,
          finish_reason: str | None = None, role: bool = False,
          usage: dict[str, Any] | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    if calls:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
    choices = [] if usage else [{"index": 0, "delta": delta, "logprobs": None,
                                 "finish_reason": finish_reason}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "system_fingerprint": None, "choices": choices, "usage": usage}


def streamed(chunks: list[dict[str, Any]], **body: Any) -> list[Any]:
    made = list(events(skeleton({"model": MODEL, "input": "Hi", **body}), iter(chunks)))
    assert [event["sequence_number"] for event in made] == list(range(len(made)))
    return [EVENT.validate_python(event) for event in made]


def test_a_streamed_text_answer_follows_openai_s_event_order() -> None:
    made = streamed([chunk("", role=True), chunk("Par"), chunk("is."),
                     chunk(finish_reason="stop"), chunk(usage=USAGE)])
    assert [event.type for event in made] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    created, completed = made[0].response, made[-1].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    assert created.id == completed.id
    assert [e.delta for e in made if e.type == "response.output_text.delta"] == ["Par", "is."]
    item_ids = {e.item_id for e in made if hasattr(e, "item_id")}
    assert item_ids == {completed.output[0].id}
    assert made[6].text == "Paris." and made[8].item.status == "completed"
    assert completed.status == "completed" and completed.output_text == "Paris."
    assert completed.usage is not None and completed.usage.total_tokens == 25


def test_a_streamed_call_is_one_function_call_item_after_the_message() -> None:
    made = streamed([chunk("", role=True), chunk("Looking."), chunk("\n"), chunk(calls=[CALL]),
                     chunk(finish_reason="tool_calls"), chunk(usage=USAGE)], tools=[TOOL])
    types = [event.type for event in made]
    assert types[2:] == [
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    added, delta, done, item_done = made[9:13]
    assert added.output_index == 1 and added.item.arguments == ""
    assert added.item.status == "in_progress" and added.item.call_id == "call_x"
    assert delta.delta == done.arguments == '{"city": "Paris"}'
    assert item_done.item.status == "completed" and item_done.item.id == added.item.id
    assert [item.type for item in made[-1].response.output] == ["message", "function_call"]


def test_a_call_streamed_in_openai_s_delta_shape_is_joined() -> None:
    """The chat stream sends a call as id, type, name and empty arguments, then the arguments
    alone under the same index (tunegate.serving.completions._tool_call_chunks)."""
    first = {"index": 0, "id": "call_x", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}
    rest = [{"index": 0, "function": {"arguments": piece}} for piece in ('{"city"', ': "Paris"}')]
    made = streamed([chunk("", role=True), *[{**chunk(), "choices": [{
        "index": 0, "delta": {"tool_calls": [delta]}, "logprobs": None, "finish_reason": None}]}
        for delta in (first, *rest)], chunk(finish_reason="tool_calls"), chunk(usage=USAGE)],
        tools=[TOOL])
    [done] = [e for e in made if e.type == "response.function_call_arguments.done"]
    assert done.arguments == '{"city": "Paris"}'
    [call] = made[-1].response.output
    assert (call.call_id, call.name, call.arguments) == ("call_x", "get_weather",
                                                        '{"city": "Paris"}')


def test_whitespace_before_a_call_makes_no_message_item() -> None:
    made = streamed([chunk("", role=True), chunk("\n"), chunk(calls=[CALL]),
                     chunk(finish_reason="tool_calls"), chunk(usage=USAGE)], tools=[TOOL])
    assert [item.type for item in made[-1].response.output] == ["function_call"]
    assert not any(event.type.startswith("response.output_text") for event in made)


def test_an_empty_streamed_answer_is_one_empty_message() -> None:
    made = streamed([chunk("", role=True), chunk(finish_reason="stop"), chunk(usage=USAGE)])
    assert made[-1].response.output_text == ""
    assert [item.type for item in made[-1].response.output] == ["message"]


def test_a_streamed_answer_cut_by_the_limit_ends_incomplete() -> None:
    made = streamed([chunk("", role=True), chunk("The"), chunk(finish_reason="length"),
                     chunk(usage=USAGE)], max_output_tokens=1)
    assert made[-1].type == "response.incomplete"
    assert made[-1].response.incomplete_details.reason == "max_output_tokens"
    assert made[-2].item.status == "incomplete"


def test_closing_the_events_closes_the_generation() -> None:
    closed = []

    def chunks() -> Iterator[dict[str, Any]]:
        try:
            yield chunk("", role=True)
            yield chunk("a")
            yield chunk("b")
        finally:
            closed.append(True)

    made = events(skeleton({"model": MODEL, "input": "Hi"}), chunks())
    for _ in range(5):
        next(made)
    made.close()
    assert closed == [True]


def test_the_wire_names_each_event_and_an_error_continues_the_numbering() -> None:
    def failing() -> Iterator[dict[str, Any]]:
        yield chunk("", role=True)
        yield chunk("a")
        raise ServerError("The model failed")

    wire = list(response_events(events(skeleton({"model": MODEL, "input": "Hi"}), failing())))
    blocks = [block.split("\n") for block in wire]
    names = [lines[0].removeprefix("event: ") for lines in blocks]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in blocks]
    assert [data["type"] for data in datas] == names
    assert names[-1] == "error" and "[DONE]" not in "".join(wire)
    assert [data["sequence_number"] for data in datas] == list(range(len(datas)))
    error = EVENT.validate_python(datas[-1])
    assert error.type == "error" and error.message == "The model failed"


def test_a_stored_response_is_never_found() -> None:
    error = not_stored("resp_123")
    assert (error.status, error.param, error.code) == (404, "response_id", "response_not_found")
    assert "does not store responses" in error.message


# --------------------------------------------------------------------------- the contract run

def test_the_contract_rules_make_a_schema_valid_request_one_the_translation_takes() -> None:
    """schemathesis draws schema-valid bodies that tunegate refuses (tunegate.contract.rules):
    the rewrite must leave one that ``chat_request`` accepts, small and quick to answer."""
    from types import SimpleNamespace

    from tunegate.contract import rules

    body = {"model": "x", "previous_response_id": "resp_1", "background": True,
            "conversation": "c", "prompt": {}, "top_logprobs": 5,
            "tools": [{"type": "web_search"}, TOOL, {"type": "function"}],
            "tool_choice": {"type": "file_search"}, "max_output_tokens": 500,
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {"not": {}}}},
            "metadata": {"k" * 65: "v", "ok": "v"}, "instructions": "i" * 5000,
            "input": [{"type": "item_reference", "id": "x"}, {"type": "function_call"},
                      {"role": "user", "content": [{"type": "input_image"}]},
                      {"role": "assistant", "content": "a" * 3000}]}
    case = SimpleNamespace(operation=SimpleNamespace(label="POST /responses"), meta=None,
                           body=body, path_parameters={}, query=None, headers=None)
    rules.acceptable(case, training_file=lambda: "file-1", base_models=[MODEL],
                     training_content=b"", completable_upload=lambda: ("upload_1", []))
    request = chat_request(case.body)
    assert case.body["model"] == MODEL and case.body["max_output_tokens"] == rules.MAX_TOKENS
    assert case.body["metadata"] == {"ok": "v"}
    assert len(json.dumps(request.body["messages"])) <= 2 * rules.MAX_PROMPT_BYTES
