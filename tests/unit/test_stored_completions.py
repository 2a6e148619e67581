"""Stored completions' pure parts: a stream's chunks put back together as the completion they
make up, request messages as the messages route lists them, and the export's training line
from what the routes answer."""

from __future__ import annotations

from typing import Any

from tunegate.client.completions import training_line
from tunegate.domain.chat_chunks import assemble
from tunegate.domain.stored_completions import message_object


def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "m",
            "system_fingerprint": None, "choices": choices, "usage": usage}


def delta(index: int, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "logprobs": None, "finish_reason": finish}


def test_a_stream_assembles_into_its_completion() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    completion = assemble([
        chunk([delta(0, role="assistant", content="")]), chunk([delta(1, role="assistant")]),
        chunk([delta(0, content="Par")]), chunk([delta(1, content="Lyon")]),
        chunk([delta(0, content="is")]), chunk([delta(0, "stop")]), chunk([delta(1, "length")]),
        chunk([], usage)])
    assert completion == {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
        "system_fingerprint": None, "usage": usage, "choices": [
            {"index": 0, "logprobs": None, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "Paris", "refusal": None, "tool_calls": None}},
            {"index": 1, "logprobs": None, "finish_reason": "length", "message": {
                "role": "assistant", "content": "Lyon", "refusal": None, "tool_calls": None}}]}


def test_streamed_tool_calls_are_put_together() -> None:
    completion = assemble([
        chunk([delta(0, role="assistant")]),
        chunk([delta(0, tool_calls=[{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "weather", "arguments": ""}}])]),
        chunk([delta(0, tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}])]),
        chunk([delta(0, tool_calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}])]),
        chunk([delta(0, "tool_calls")])])
    assert completion is not None
    message = completion["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city": "Oslo"}'}}]


def test_a_stream_that_never_finished_is_nothing() -> None:
    assert assemble([]) is None
    assert assemble([chunk([delta(0, role="assistant", content="Par")])]) is None


def test_messages_keep_parts_and_calls() -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    assert message_object("chatcmpl-9", 2, {"role": "user", "content": parts}) == {
        "id": "chatcmpl-9-2", "role": "user", "content": "Hello there", "content_parts": parts}
    call = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert message_object("chatcmpl-9", 0, {"role": "assistant", "content": None,
                                            "tool_calls": call})["tool_calls"] == call


def test_an_exchange_is_a_training_line() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    completion = {"tools": tools, "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "Paris", "refusal": None, "tool_calls": None}}]}
    messages = [{"id": "chatcmpl-1-0", "role": "system", "content": "Be brief."},
                {"id": "chatcmpl-1-1", "role": "user", "content": "Capital?", "name": "ann",
                 "content_parts": None}]
    assert training_line(completion, messages) == {"tools": tools, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital?", "name": "ann"},
        {"role": "assistant", "content": "Paris"}]}
    assert training_line({"choices": []}, messages) is None
